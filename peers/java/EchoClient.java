// A grpc-java client of leaklab's toy server, with the same modes, flags and progress lines as the
// Node peer (peers/node/echo_client.js).
//
//   reused         one channel for every request
//   leak           a new channel per request, one unary call, then the channel dropped without
//                  shutdown(); it is NOT kept in a list (see leakOne() for why)
//   close          a new channel per request, shutdown() and awaitTermination() after its call
//   stream-leak    one channel; each request opens the endless Echo/ServerStream, reads its first
//                  message and keeps the call, neither cancelled nor read to its end
//   stream-cancel  the same, cancelling each call after its first message
//   buffer-leak    one channel; each reply's arrival is kept in a 64 KiB direct ByteBuffer that is never
//                  released: a leak outside the heap, where the JVM's heap holds only a small object each
//
// It prints `leaklab-progress ok=N failed=M` once a second on stdout, which `loadgen watch` reads to
// count requests; the stream modes add `streams=N`, the calls held open. The JVM's threads are OS
// threads, which leaklab counts from outside, so no thread counter is printed. The client never calls
// System.gc() itself: leaklab judges the JVM from outside, collections and all. Only with
// --report-live-heap does it collect before each line and add `live_heap_bytes=BYTES`, the heap in use after
// that collection (MemoryMXBean), and `native_bytes=BYTES`, its direct buffers (BufferPoolMXBean), so that
// a test can compare the outside view with the inside one.
//
// No generated code: the two methods of proto/leaklab/v1/echo.proto are called with a pass-through
// byte[] marshaller and requests encoded here by hand (protobuf's wire format); responses are not
// decoded. Logging is java.util.logging's default (SEVERE and INFO to stderr), so grpc-java's warning
// about a channel that was garbage-collected without shutdown() reaches the command's log.
//
// Built by `make peers` against Debian's grpc-java 1.41 (libgrpc-java), run by target/peers/java/echo-client.

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

public final class EchoClient {
    /** The direct memory buffer-leak keeps per request. */
    static final int BUFFER_BYTES = 64 * 1024;
    static final List<String> MODES = List.of("reused", "leak", "close", "stream-leak", "stream-cancel", "buffer-leak");

    // The full method names: package leaklab.v1, service Echo.
    static final String SERVICE = "leaklab.v1.Echo";

    /** Messages as bytes, both ways: requests are encoded by hand, responses are not decoded. */
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
            .setFullMethodName(MethodDescriptor.generateFullMethodName(SERVICE, "Unary"))
            .setRequestMarshaller(BYTES)
            .setResponseMarshaller(BYTES)
            .build();

    static final MethodDescriptor<byte[], byte[]> SERVER_STREAM = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.SERVER_STREAMING)
            .setFullMethodName(MethodDescriptor.generateFullMethodName(SERVICE, "ServerStream"))
            .setRequestMarshaller(BYTES)
            .setResponseMarshaller(BYTES)
            .build();

    // --- protobuf wire format, just what the two requests need ---

    static void varint(ByteArrayOutputStream out, long value) {
        while ((value & ~0x7FL) != 0) {
            out.write((int) ((value & 0x7F) | 0x80));
            value >>>= 7;
        }
        out.write((int) value);
    }

    /** Field `number` of type bytes (wire type 2); omitted when empty, as proto3 does. */
    static void bytesField(ByteArrayOutputStream out, int number, byte[] value) {
        if (value.length == 0) return;
        varint(out, ((long) number << 3) | 2);
        varint(out, value.length);
        out.write(value, 0, value.length);
    }

    /** Field `number` of type uint32 (wire type 0); omitted when zero, as proto3 does. */
    static void uint32Field(ByteArrayOutputStream out, int number, long value) {
        if (value == 0) return;
        varint(out, ((long) number << 3));
        varint(out, value & 0xFFFFFFFFL);
    }

    /** leaklab.v1.EchoRequest { bytes payload = 1; uint32 response_bytes = 2; uint32 delay_ms = 3; } */
    static byte[] echoRequest(byte[] payload) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        bytesField(out, 1, payload);
        return out.toByteArray();
    }

    /** leaklab.v1.StreamRequest { bytes payload = 1; uint32 messages = 2; uint32 interval_ms = 3; } */
    static byte[] streamRequest(byte[] payload, long messages, long intervalMs) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        bytesField(out, 1, payload);
        uint32Field(out, 2, messages);
        uint32Field(out, 3, intervalMs);
        return out.toByteArray();
    }

    // --- flags ---

    static final class Options {
        String addr = "127.0.0.1:50051";
        String mode = "reused";
        long requests = 1000;
        double rate = 100;
        double hold = 3;
        double streamInterval = 30;
        boolean reportLiveHeap = false;
    }

    static final class BadFlag extends Exception {
        private static final long serialVersionUID = 1L;

        BadFlag(String message) {
            super(message);
        }
    }

    static final String USAGE = "usage: echo-client [--addr HOST:PORT] [--mode reused|leak|close|stream-leak|stream-cancel|buffer-leak]\n"
            + "                   [--requests N] [--rate PER_SECOND] [--hold SECONDS] [--stream-interval SECONDS]\n"
            + "                   [--report-live-heap]";

    static Options options(String[] argv) throws BadFlag {
        Map<String, String> values = new HashMap<>();
        Options o = new Options();
        List<String> valued = List.of("addr", "mode", "requests", "rate", "hold", "stream-interval");
        for (int i = 0; i < argv.length; i++) {
            String arg = argv[i];
            if (!arg.startsWith("--")) {
                throw new BadFlag("unexpected argument " + arg + "\n" + USAGE);
            }
            String name = arg.substring(2);
            String value = null;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            }
            if (name.equals("report-live-heap")) {
                if (value != null) throw new BadFlag("--report-live-heap takes no value");
                o.reportLiveHeap = true;
                continue;
            }
            if (!valued.contains(name)) {
                throw new BadFlag("--" + name + ": unknown flag\n" + USAGE);
            }
            if (value == null) {
                if (i + 1 >= argv.length) throw new BadFlag("--" + name + ": a value is needed");
                value = argv[++i];
            }
            values.put(name, value);
        }
        o.addr = values.getOrDefault("addr", o.addr);
        int colon = o.addr.lastIndexOf(':');
        boolean portOk = false;
        if (colon > 0) {
            try {
                int port = Integer.parseInt(o.addr.substring(colon + 1));
                portOk = port > 0 && port < 65536;
            } catch (NumberFormatException e) {
                portOk = false;
            }
        }
        if (!portOk) throw new BadFlag("--addr: " + o.addr + " is not host:port");
        o.mode = values.getOrDefault("mode", o.mode);
        if (!MODES.contains(o.mode)) {
            throw new BadFlag("--mode: " + o.mode + " is not one of " + String.join(", ", MODES));
        }
        if (values.containsKey("requests")) {
            String v = values.get("requests");
            try {
                o.requests = Long.parseLong(v);
            } catch (NumberFormatException e) {
                o.requests = 0;
            }
            if (o.requests < 1 || o.requests > Integer.MAX_VALUE) {
                throw new BadFlag("--requests: " + v + " is not a positive whole number (up to " + Integer.MAX_VALUE + ")");
            }
        }
        o.rate = number(values, "rate", o.rate, false);
        o.hold = number(values, "hold", o.hold, true);
        o.streamInterval = number(values, "stream-interval", o.streamInterval, true);
        if (o.streamInterval * 1000 > 0xFFFFFFFFL) {
            throw new BadFlag("--stream-interval: " + values.get("stream-interval") + " is too long (interval_ms is a uint32)");
        }
        return o;
    }

    /** A finite number, positive (or zero, where `zeroOk`), as the node peer takes them. */
    static double number(Map<String, String> values, String flag, double fallback, boolean zeroOk) throws BadFlag {
        if (!values.containsKey(flag)) return fallback;
        String v = values.get(flag);
        double d;
        try {
            d = Double.parseDouble(v);
        } catch (NumberFormatException e) {
            d = Double.NaN;
        }
        if (!Double.isFinite(d) || d < 0 || (!zeroOk && d == 0)) {
            throw new BadFlag("--" + flag + ": " + v + " is not a positive number");
        }
        return d;
    }

    // --- the client ---

    final Options args;
    final boolean streams;
    final AtomicLong ok = new AtomicLong();
    final AtomicLong failed = new AtomicLong();
    final byte[] unaryRequest = echoRequest(filled(64));
    final byte[] streamRequest;
    /** The stream calls held open (stream-leak): the bug, kept as a per-request cache would keep them. */
    final List<ClientCall<byte[], byte[]>> kept = new ArrayList<>();
    /** The direct buffers kept (buffer-leak): their contents live outside the heap. */
    final List<ByteBuffer> buffers = new ArrayList<>();
    final ManagedChannel shared;
    final CountDownLatch done;
    /**
     * Waits out each channel's termination in close mode, off grpc-java's callback threads: two threads, not
     * one per channel, so that the correct mode's thread count stays flat (the channels terminate side by
     * side whichever thread waits for them).
     */
    final ExecutorService closer;

    EchoClient(Options args) {
        this.args = args;
        this.streams = args.mode.startsWith("stream-");
        this.streamRequest = streamRequest(filled(64), 0xFFFFFFFFL, Math.round(args.streamInterval * 1000));
        this.shared = List.of("reused", "buffer-leak").contains(args.mode) || streams ? newChannel(args.addr) : null;
        this.done = new CountDownLatch((int) args.requests);
        this.closer = args.mode.equals("close") ? Executors.newFixedThreadPool(2, daemon("closer")) : null;
    }

    static byte[] filled(int n) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) 'x');
        return b;
    }

    static java.util.concurrent.ThreadFactory daemon(String name) {
        return runnable -> {
            Thread t = new Thread(runnable, name);
            t.setDaemon(true);
            return t;
        };
    }

    /** A plaintext channel to the toy server; a leaked channel's allocation site names this and its caller. */
    static ManagedChannel newChannel(String addr) {
        return NettyChannelBuilder.forTarget(addr).usePlaintext().build();
    }

    /** One unary call on `channel`; `then` gets whether it succeeded. */
    void unary(ManagedChannel channel, Consumer<Boolean> then) {
        ClientCall<byte[], byte[]> call =
                channel.newCall(UNARY, CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS));
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onClose(Status status, Metadata trailers) {
                then.accept(status.isOk());
            }
        }, new Metadata());
        call.request(1);
        call.sendMessage(unaryRequest);
        call.halfClose();
    }

    void count(boolean success) {
        (success ? ok : failed).incrementAndGet();
    }

    void reusedOne() {
        unary(shared, success -> {
            count(success);
            done.countDown();
        });
    }

    /** A correct call whose caller keeps 64 KiB of direct memory for it, never released. */
    void bufferLeakOne() {
        unary(shared, success -> {
            try {
                ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER_BYTES);
                buffer.put(unaryRequest);
                synchronized (buffers) {
                    buffers.add(buffer);
                }
                count(success);
            } catch (OutOfMemoryError e) {
                // Direct memory is capped (by default at the heap's maximum): the call counts as failed.
                count(false);
            } finally {
                done.countDown();
            }
        });
    }

    // The bug. The channel is dropped without shutdown() and deliberately NOT kept in a list (unlike the
    // Node and Python peers, which keep theirs): grpc-java wraps each channel in a
    // ManagedChannelOrphanWrapper, and once that wrapper is garbage-collected without shutdown(), the next
    // channel built logs a SEVERE "*~*~*~ Channel ManagedChannelImpl{...} was not shutdown properly!!!"
    // with a "ManagedChannel allocation site" stack naming newChannel() and leakOne(). Dropping the
    // reference does not free the channel: only the thin wrapper goes. The ManagedChannelImpl behind it
    // stays reachable from Netty's event loop (its connected socket and HTTP/2 handler) and from grpc's
    // shared timer (its idle timer), so each orphaned channel still holds its TCP connection, its Netty
    // buffers and its transport, until its idle timeout (30 minutes by default) closes the connection.
    // That is the leak: memory and connections that grow with the requests.
    void leakOne() {
        ManagedChannel channel = newChannel(args.addr);
        unary(channel, success -> {
            count(success);
            done.countDown();
        });
        // `channel` goes out of scope here: never shut down, never kept.
    }

    void closeOne() {
        ManagedChannel channel = newChannel(args.addr);
        unary(channel, success -> {
            count(success);
            channel.shutdown();
            closer.execute(() -> {
                try {
                    channel.awaitTermination(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                } finally {
                    done.countDown();
                }
            });
        });
    }

    /** Opens Echo/ServerStream on the shared channel; reads its first message only. */
    void streamOne() {
        ClientCall<byte[], byte[]> call = shared.newCall(SERVER_STREAM, CallOptions.DEFAULT);
        call.start(new ClientCall.Listener<>() {
            boolean answered;

            private synchronized boolean answer() {
                if (answered) return false;
                answered = true;
                return true;
            }

            @Override
            public void onMessage(byte[] message) {
                if (!answer()) return;
                count(true);
                if (args.mode.equals("stream-cancel")) {
                    call.cancel("stream-cancel: the first message was read", null);
                } else {
                    // The bug: the call is kept, neither cancelled nor read to its end (no more messages
                    // are requested; the server's later ones wait in flow control).
                    synchronized (kept) {
                        kept.add(call);
                    }
                }
                done.countDown();
            }

            // The end of the call after its first message (cancelled, or the server gone) is not news.
            @Override
            public void onClose(Status status, Metadata trailers) {
                if (!answer()) return;
                count(false);
                done.countDown();
            }
        }, new Metadata());
        call.request(1);
        call.sendMessage(streamRequest);
        call.halfClose();
    }

    synchronized void progress() {
        StringBuilder line = new StringBuilder("leaklab-progress ok=").append(ok.get()).append(" failed=").append(failed.get());
        if (streams) {
            int held;
            synchronized (kept) {
                held = kept.size();
            }
            line.append(" streams=").append(held);
        }
        if (args.reportLiveHeap) {
            // Only in this mode: the process measuring itself after a full collection.
            System.gc();
            line.append(" live_heap_bytes=").append(ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
            // And its direct buffers, outside the heap (what buffer-leak keeps).
            long direct = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                    .filter(pool -> pool.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
            line.append(" native_bytes=").append(direct);
        }
        System.out.println(line);
        System.out.flush();
    }

    int run() throws InterruptedException {
        ScheduledExecutorService reporter = Executors.newSingleThreadScheduledExecutor(daemon("progress"));
        reporter.scheduleAtFixedRate(this::progress, 1, 1, TimeUnit.SECONDS);
        long start = System.nanoTime();
        for (long i = 0; i < args.requests; i++) {
            long delay = start + (long) (i * 1e9 / args.rate) - System.nanoTime();
            if (delay > 0) TimeUnit.NANOSECONDS.sleep(delay);
            switch (args.mode) {
                case "reused":
                    reusedOne();
                    break;
                case "leak":
                    leakOne();
                    break;
                case "close":
                    closeOne();
                    break;
                case "buffer-leak":
                    bufferLeakOne();
                    break;
                default:
                    streamOne();
            }
        }
        done.await();
        progress();
        Thread.sleep(Math.round(args.hold * 1000));
        reporter.shutdownNow();
        reporter.awaitTermination(5, TimeUnit.SECONDS);
        progress();
        // Exit even with leaked channels and calls holding their connections: that is the bug, not the end
        // of the run.
        return 0;
    }

    public static void main(String[] argv) throws InterruptedException {
        for (String arg : argv) {
            if (arg.equals("--help") || arg.equals("-h")) {
                System.out.println(USAGE);
                System.exit(0);
            }
        }
        Options args;
        try {
            args = options(argv);
        } catch (BadFlag e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        System.exit(new EchoClient(args).run());
    }
}
