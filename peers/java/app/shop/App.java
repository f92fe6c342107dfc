package shop;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A small grpc-java service shaped like the incident's, the Java twin of peers/go/app.go. It drives its
 * own load: --requests requests, open loop at --rate a second, each run by one of a fixed pool of worker
 * threads (as a server's request threads would run them) through the handlers, each of which calls an
 * "external service", the toy server's Echo/Unary (Echo.java):
 *
 *   Orders.list       every request      the shared channel (Clients.shared())
 *   Payments.charge   every request      mode app: a new channel per call, never shut down
 *   Inventory.reserve every 2nd request  mode app: a new channel per call, never shut down
 *   Shipping.quote    every 4th request  mode app: a new channel per call, never shut down
 *   Notify.send       every 8th request  a new channel per call, shut down after it: no leak
 *
 * Mode app-fixed is the same service with Payments, Inventory and Shipping on the shared channel: the
 * "after" picture. Every per-call channel is built by Clients.newChannel(), so the "ManagedChannel
 * allocation site" stacks grpc-java logs for the leaked ones name it and, below it, the handler.
 *
 * It prints `leaklab-progress ok=N failed=M` once a second on stdout (a request is ok when all its calls
 * were), as peers/java/EchoClient.java does, and exits 0 --hold seconds after the last request's answer;
 * if the heap runs out first, it exits 3 at once (see outOfMemory()).
 * Logging is java.util.logging's default: grpc-java's SEVERE "was not shutdown properly" warnings reach
 * stderr.
 *
 * Built against Debian's grpc-java 1.41 like EchoClient, run by target/peers/java/shop-app.
 */
public final class App {
    static final List<String> MODES = List.of("app", "app-fixed");
    /** The request threads: enough for the calls in flight at a few hundred requests a second. */
    static final int WORKERS = 16;
    /** The largest payload: the toy server echoes it, and grpc-java takes up to 4 MiB a message. */
    static final int MAX_PAYLOAD = 4 * 1000 * 1000;

    static final class Options {
        String addr = "127.0.0.1:50051";
        String mode = "app";
        long requests = 1000;
        double rate = 100;
        double hold = 3;
        int payloadBytes = 0;
    }

    static final class BadFlag extends Exception {
        private static final long serialVersionUID = 1L;

        BadFlag(String message) {
            super(message);
        }
    }

    static final String USAGE = "usage: shop-app [--addr HOST:PORT] [--mode app|app-fixed] [--requests N] [--rate PER_SECOND]\n"
            + "                [--hold SECONDS] [--payload-bytes N]";

    static Options options(String[] argv) throws BadFlag {
        Map<String, String> values = new HashMap<>();
        Options o = new Options();
        List<String> valued = List.of("addr", "mode", "requests", "rate", "hold", "payload-bytes");
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
        o.requests = whole(values, "requests", o.requests, 1, Integer.MAX_VALUE);
        o.rate = number(values, "rate", o.rate, false);
        o.hold = number(values, "hold", o.hold, true);
        o.payloadBytes = (int) whole(values, "payload-bytes", o.payloadBytes, 0, MAX_PAYLOAD);
        return o;
    }

    /** A whole number from `min` to `max`. */
    static long whole(Map<String, String> values, String flag, long fallback, long min, long max) throws BadFlag {
        if (!values.containsKey(flag)) return fallback;
        String v = values.get(flag);
        long n;
        try {
            n = Long.parseLong(v);
        } catch (NumberFormatException e) {
            n = min - 1;
        }
        if (n < min || n > max) {
            throw new BadFlag("--" + flag + ": " + v + " is not a whole number from " + min + " to " + max);
        }
        return n;
    }

    /** A finite number, positive (or zero, where `zeroOk`), as EchoClient takes them. */
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

    // --- the service ---

    final Options args;
    final AtomicLong ok = new AtomicLong();
    final AtomicLong failed = new AtomicLong();
    final CountDownLatch done;

    App(Options args) {
        this.args = args;
        this.done = new CountDownLatch((int) args.requests);
        Clients.configure(args.addr, args.mode.equals("app-fixed"));
        Echo.configure(args.payloadBytes);
    }

    /** Request number n (from 0) through the handlers; the first call that fails ends it, as in Go's. */
    static boolean handle(long n) throws InterruptedException {
        if (!Orders.list()) return false;
        if (!Payments.charge()) return false;
        if (n % 2 == 0 && !Inventory.reserve()) return false;
        if (n % 4 == 0 && !Shipping.quote()) return false;
        if (n % 8 == 0 && !Notify.send()) return false;
        return true;
    }

    /** Runs request n on a worker and counts it; an exception is a failed request. */
    void serve(long n) {
        boolean success = false;
        try {
            success = handle(n);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            // Counted as failed below.
        } finally {
            (success ? ok : failed).incrementAndGet();
            done.countDown();
        }
    }

    /** The exit status when the heap runs out, and the line said then (made now: then, nothing can be). */
    static final int OUT_OF_MEMORY = 3;
    static final byte[] OUT_OF_MEMORY_LINE =
            "shop-app: out of memory, exiting with status 3\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

    /**
     * The end of the leak under a small heap (-Xmx64m in JDK_JAVA_OPTIONS): once the leaked channels fill
     * it, OutOfMemoryError is thrown in whichever thread allocates next, grpc-java's and Netty's included,
     * and a run that waited for every request would hang with its workers dead. So the service does what
     * -XX:+ExitOnOutOfMemoryError does: it exits at once, with status 3, as a container's service would
     * be restarted.
     */
    static void outOfMemory() {
        try {
            System.err.write(OUT_OF_MEMORY_LINE, 0, OUT_OF_MEMORY_LINE.length);
            System.err.flush();
        } finally {
            Runtime.getRuntime().halt(OUT_OF_MEMORY);
        }
    }

    static ThreadFactory threads(String name, boolean daemon) {
        AtomicLong made = new AtomicLong();
        return runnable -> {
            Thread t = new Thread(runnable, name + "-" + made.incrementAndGet());
            t.setDaemon(daemon);
            return t;
        };
    }

    synchronized void progress() {
        try {
            System.out.println("leaklab-progress ok=" + ok.get() + " failed=" + failed.get());
            System.out.flush();
        } catch (OutOfMemoryError e) {
            // Not uncaught: the scheduler would keep it and silently stop the lines.
            outOfMemory();
        }
    }

    int run() throws InterruptedException {
        ScheduledExecutorService reporter = Executors.newSingleThreadScheduledExecutor(threads("progress", true));
        reporter.scheduleAtFixedRate(this::progress, 1, 1, TimeUnit.SECONDS);
        ExecutorService workers = Executors.newFixedThreadPool(WORKERS, threads("shop-worker", true));
        long start = System.nanoTime();
        for (long i = 0; i < args.requests; i++) {
            long delay = start + (long) (i * 1e9 / args.rate) - System.nanoTime();
            if (delay > 0) TimeUnit.NANOSECONDS.sleep(delay);
            long n = i;
            workers.execute(() -> serve(n));
        }
        done.await();
        progress();
        Thread.sleep(Math.round(args.hold * 1000));
        reporter.shutdownNow();
        reporter.awaitTermination(5, TimeUnit.SECONDS);
        progress();
        // Exit with the leaked channels still holding their connections: that is the bug, not the end of
        // the run.
        return 0;
    }

    public static void main(String[] argv) throws InterruptedException {
        for (String arg : argv) {
            if (arg.equals("--help") || arg.equals("-h")) {
                System.out.println(USAGE);
                System.exit(0);
            }
        }
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
            if (e instanceof OutOfMemoryError) outOfMemory();
            // Otherwise what the JVM prints by default.
            System.err.print("Exception in thread \"" + thread.getName() + "\" ");
            e.printStackTrace();
        });
        Options args;
        try {
            args = options(argv);
        } catch (BadFlag e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        System.exit(new App(args).run());
    }
}
