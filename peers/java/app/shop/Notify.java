package shop;

import io.grpc.ManagedChannel;
import java.util.concurrent.TimeUnit;

/**
 * Notify.send() runs on every 8th request. It builds a channel per call, as the leaking three do, but
 * shuts it down after its call and waits for it to terminate: a per-call channel done right, which leaks
 * nothing (peers/java/EchoClient.java's close mode). The wait is on the calling thread, one of App's
 * workers: EchoClient's close mode waits on a pool of its own only because its calls end on grpc-java's
 * callback threads, which must not block.
 */
final class Notify {
    private Notify() {}

    static boolean send() throws InterruptedException {
        ManagedChannel channel = Clients.newChannel();
        try {
            return Echo.call(channel);
        } finally {
            channel.shutdown();
            channel.awaitTermination(10, TimeUnit.SECONDS);
        }
    }
}
