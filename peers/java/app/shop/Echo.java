package shop;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The "external service" every handler calls: leaklab.v1.Echo/Unary on the toy server, the way
 * peers/java/EchoClient.java calls it (which lives in the unnamed package, so what is needed is copied
 * here): no generated code, a pass-through byte[] marshaller, the request encoded by hand (protobuf's wire
 * format), the response not decoded.
 */
final class Echo {
    private Echo() {}

    /** Messages as bytes, both ways. */
    static final MethodDescriptor.Marshaller<byte[]> BYTES = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
            return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
            try {
                return stream.readAllBytes();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    };

    static final MethodDescriptor<byte[], byte[]> UNARY = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY)
            .setFullMethodName(MethodDescriptor.generateFullMethodName("leaklab.v1.Echo", "Unary"))
            .setRequestMarshaller(BYTES)
            .setResponseMarshaller(BYTES)
            .build();

    /** Every call's request, set once by App before the first request. */
    private static volatile byte[] request = echoRequest(new byte[0]);

    static void configure(int payloadBytes) {
        request = echoRequest(new byte[payloadBytes]);
    }

    static void varint(ByteArrayOutputStream out, long value) {
        while ((value & ~0x7FL) != 0) {
            out.write((int) ((value & 0x7F) | 0x80));
            value >>>= 7;
        }
        out.write((int) value);
    }

    /** leaklab.v1.EchoRequest { bytes payload = 1; ... }: field 1 omitted when empty, as proto3 does. */
    static byte[] echoRequest(byte[] payload) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        if (payload.length > 0) {
            varint(out, (1L << 3) | 2);
            varint(out, payload.length);
            out.write(payload, 0, payload.length);
        }
        return out.toByteArray();
    }

    /** The call's deadline; the caller gives up a little later if its end never arrives. */
    static final long DEADLINE_SECONDS = 10;

    /**
     * One unary call on `channel`, waited for as a blocking stub would (the handlers run on App's worker
     * threads, not on grpc-java's): whether it succeeded. The wait is bounded: when the heap runs out, a
     * grpc-java thread can die before it reports the call's end, and the worker would wait forever.
     */
    static boolean call(ManagedChannel channel) throws InterruptedException {
        CompletableFuture<Status> closed = new CompletableFuture<>();
        ClientCall<byte[], byte[]> call =
                channel.newCall(UNARY, CallOptions.DEFAULT.withDeadlineAfter(DEADLINE_SECONDS, TimeUnit.SECONDS));
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onClose(Status status, Metadata trailers) {
                closed.complete(status);
            }
        }, new Metadata());
        call.request(1);
        call.sendMessage(request);
        call.halfClose();
        try {
            return closed.get(DEADLINE_SECONDS + 5, TimeUnit.SECONDS).isOk();
        } catch (ExecutionException | TimeoutException e) {
            call.cancel("no end reported", null);
            return false;
        }
    }
}
