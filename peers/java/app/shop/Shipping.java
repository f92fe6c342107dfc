package shop;

import io.grpc.ManagedChannel;

/**
 * Shipping.quote() runs on every 4th request. In mode app it builds a channel of its own on
 * every call and never shuts it down: the bug, as in peers/java/EchoClient.java's leak mode. In mode
 * app-fixed it uses the shared channel.
 */
final class Shipping {
    private Shipping() {}

    static boolean quote() throws InterruptedException {
        if (Clients.fixed()) {
            return Echo.call(Clients.shared());
        }
        // The channel is dropped when this returns: never shut down, and deliberately not kept in a list.
        // Only grpc-java's thin ManagedChannelOrphanWrapper becomes garbage; once it is collected, a later
        // newChannel() logs SEVERE "*~*~*~ Channel ManagedChannelImpl{...} was not shutdown properly!!!"
        // with its "ManagedChannel allocation site" stack (Clients.newChannel, then this method). The
        // ManagedChannelImpl behind the wrapper stays reachable from Netty's event loop (its connection)
        // and grpc's timer (its 30-minute idle timer), so its connection, transport and buffers stay: the
        // leak.
        ManagedChannel channel = Clients.newChannel();
        return Echo.call(channel);
    }
}
