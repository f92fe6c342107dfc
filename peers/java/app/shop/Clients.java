package shop;

import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;

/**
 * The service's client helpers. shared() is the shared client getter, like the incident's
 * GetAaaRPCClient(): one channel, built once and reused by every caller. newChannel() is the one place a
 * fresh channel is built, for the callers that want one per call; a leaked channel's "ManagedChannel
 * allocation site" stack names it, and below it the handler that called it.
 */
final class Clients {
    private Clients() {}

    private static volatile String addr;
    private static volatile boolean fixed;
    private static volatile ManagedChannel shared;

    /** Called once by App before the first request. */
    static void configure(String target, boolean appFixed) {
        addr = target;
        fixed = appFixed;
    }

    /** Mode app-fixed: the handlers that build a channel per call in mode app use shared() instead. */
    static boolean fixed() {
        return fixed;
    }

    static ManagedChannel shared() {
        ManagedChannel channel = shared;
        if (channel == null) {
            synchronized (Clients.class) {
                channel = shared;
                if (channel == null) {
                    channel = newChannel();
                    shared = channel;
                }
            }
        }
        return channel;
    }

    /** A fresh plaintext channel to the toy server; its caller owns it, and must shut it down. */
    static ManagedChannel newChannel() {
        return NettyChannelBuilder.forTarget(addr).usePlaintext().build();
    }
}
