import CMosquitto
import Foundation
import Synchronization

/// Drives one libmosquitto client on its own thread with `poll`, in libmosquitto's
/// non-threaded mode, instead of `mosquitto_loop_start`.
///
/// Why: in threaded mode every publish from another thread (the forwarding hot path:
/// the local link's thread publishing on a peer link) only queues the packet and wakes the
/// client's loop thread through a socket pair, which then wakes from `select`, drains the
/// pair and writes. In non-threaded mode libmosquitto writes the packet from the calling
/// thread at once (under its own locks), so a forward costs one `write`, not a thread
/// hand-off. The loop still owns reads, keepalive and reconnects; an eventfd wakes it when
/// a write from elsewhere could not finish.
final class ClientLoop: @unchecked Sendable {
    // `handle` is used only through libmosquitto's thread-safe calls; the rest is atomics,
    // a lock, or written before the thread starts.
    private let handle: OpaquePointer
    private let wakeFD: Int32
    private let running = Atomic<Bool>(true)
    private let reconnecting = Atomic<Bool>(true)
    private let disconnectRequested = Atomic<Bool>(false)
    /// The socket was shut down on purpose: nothing may be written on it any more.
    private let aborted = Atomic<Bool>(false)
    private let loopThread = Mutex<pthread_t?>(nil)
    private let finished = DispatchSemaphore(value: 0)
    private let reconnectDelay: (min: UInt32, max: UInt32)
    private let onTurn: (@Sendable () -> Void)?
    private let turnInterval: Int32
    /// Non-blocking connects, each attempt bounded by this many seconds (nil: blocking).
    private let connectTimeout: Double?
    /// Monotonic seconds when the current attempt started; nil once its CONNACK came.
    private let attemptStarted = Mutex<Double?>(nil)

    init(handle: OpaquePointer, reconnectDelay: (min: UInt32, max: UInt32), onTurn: (@Sendable () -> Void)? = nil,
         turnInterval: Int32 = 1000, connectTimeout: Double? = nil) {
        self.handle = handle
        self.reconnectDelay = reconnectDelay
        self.onTurn = onTurn
        self.turnInterval = max(10, turnInterval)
        self.connectTimeout = connectTimeout
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
    }

    deinit { close(wakeFD) }

    func start(name: String) {
        let thread = Thread { [self] in
            loopThread.withLock { $0 = pthread_self() }
            run()
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Sends DISCONNECT from the loop thread and stops reconnecting.
    ///
    /// Never from the caller's thread: in non-threaded mode libmosquitto would write it and
    /// close the socket at once, possibly while the loop thread sits between the PUBACK of a
    /// message (already written) and the packets its callback queued (a forward, a
    /// republish), which would then be lost. On the loop thread it goes out after them.
    func requestDisconnect() {
        reconnecting.store(false, ordering: .relaxed)
        disconnectRequested.store(true, ordering: .releasing)
        wake()
    }

    private func disconnectIfRequested() {
        if disconnectRequested.exchange(false, ordering: .acquiring) && !aborted.load(ordering: .acquiring) {
            _ = mosquitto_disconnect(handle)
        }
    }

    /// Stops reconnecting; the current connection, if any, stays up until it breaks.
    func stopReconnecting() {
        reconnecting.store(false, ordering: .relaxed)
    }

    /// Drops the connection the way a crashed client does: the socket is shut down and no
    /// DISCONNECT is ever sent (not even by a later `close`), so the broker sees the
    /// connection close. The loop thread then reads end-of-file, and libmosquitto closes the
    /// socket and reports the loss; no reconnect follows.
    func abortConnection() {
        reconnecting.store(false, ordering: .relaxed)
        aborted.store(true, ordering: .releasing)
        let sock = mosquitto_socket(handle)
        if sock >= 0 { _ = shutdown(sock, Int32(SHUT_RDWR)) }
        wake()
    }

    /// A non-blocking connect attempt has just been started (by `start` or the loop).
    func connectAttemptStarted() {
        attemptStarted.withLock { $0 = monotonicSeconds() }
    }

    /// The CONNACK of the current attempt arrived.
    func connected() {
        attemptStarted.withLock { $0 = nil }
    }

    /// Closes the connection the way a broken network does (no DISCONNECT), and lets the loop
    /// report the loss and reconnect as usual: for a connection that no longer carries
    /// anything although its socket looks fine (a silent partition).
    func dropConnection() {
        let sock = mosquitto_socket(handle)
        if sock >= 0 { _ = shutdown(sock, Int32(SHUT_RDWR)) }
        wake()
    }

    /// Ends the loop and waits (bounded) for its thread. Must not be called on the loop
    /// thread. Returns false if the thread is still busy — inside a blocking reconnect to
    /// an unreachable host, which can take as long as a TCP connect timeout.
    func stop(timeout: DispatchTimeInterval = .seconds(5)) -> Bool {
        running.store(false, ordering: .releasing)
        wake()
        return finished.wait(timeout: .now() + timeout) == .success
    }

    /// A write from another thread may have left bytes for the loop to send.
    @inline(__always)
    func wakeIfNeeded() {
        guard mosquitto_want_write(handle) else { return }
        if let t = loopThread.withLock({ $0 }), pthread_equal(t, pthread_self()) != 0 { return }
        wake()
    }

    /// Wakes the loop so it runs its turn hook (from any thread).
    func wakeForTurn() { wake() }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    private func drainWake() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, 8)
    }

    /// Sleeps up to `milliseconds`, or less if woken.
    private func pause(milliseconds: Int32) {
        var fd = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        if poll(&fd, 1, milliseconds) > 0 { drainWake() }
    }

    private func run() {
        defer {
            // A disconnect requested together with the stop still goes out.
            if mosquitto_socket(handle) >= 0 && !aborted.load(ordering: .acquiring) {
                if mosquitto_want_write(handle) { _ = mosquitto_loop_write(handle, 1) }
                disconnectIfRequested()
            }
        }
        var delay = max(1, reconnectDelay.min)
        while running.load(ordering: .relaxed) {
            onTurn?()
            let sock = mosquitto_socket(handle)
            if sock < 0 {
                guard reconnecting.load(ordering: .relaxed) else {
                    pause(milliseconds: 1000)
                    continue
                }
                pause(milliseconds: Int32(delay) * 1000)
                guard running.load(ordering: .relaxed), reconnecting.load(ordering: .relaxed) else { continue }
                if connectTimeout != nil {
                    // Never blocks; the attempt is watched below and started over if it hangs.
                    connectAttemptStarted()
                    if mosquitto_reconnect_async(handle) == Int32(MOSQ_ERR_SUCCESS.rawValue) {
                        delay = max(1, reconnectDelay.min)
                    } else {
                        delay = min(delay * 2, max(reconnectDelay.min, reconnectDelay.max))
                    }
                    continue
                }
                if mosquitto_reconnect(handle) == Int32(MOSQ_ERR_SUCCESS.rawValue) {
                    delay = max(1, reconnectDelay.min)
                } else {
                    delay = min(delay * 2, max(reconnectDelay.min, reconnectDelay.max))
                }
                continue
            }
            var fds = [
                pollfd(fd: sock, events: Int16(POLLIN) | (mosquitto_want_write(handle) ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            if let connectTimeout, let started = attemptStarted.withLock({ $0 }),
               monotonicSeconds() - started > connectTimeout {
                // No CONNACK in time (SYN or CONNECT lost in a partition, or a frozen broker):
                // start over on a new socket, so the first attempt after a heal succeeds.
                connectAttemptStarted()
                _ = mosquitto_reconnect_async(handle)
                continue
            }
            let n = poll(&fds, 2, turnInterval)
            if n < 0 && errno != EINTR { pause(milliseconds: 10) }
            if fds[1].revents != 0 { drainWake() }
            var rc = Int32(MOSQ_ERR_SUCCESS.rawValue)
            if fds[0].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                rc = mosquitto_loop_read(handle, 1)
            }
            if rc == Int32(MOSQ_ERR_SUCCESS.rawValue) && mosquitto_want_write(handle) {
                rc = mosquitto_loop_write(handle, 1)
            }
            if rc == Int32(MOSQ_ERR_SUCCESS.rawValue) {
                _ = mosquitto_loop_misc(handle)
            }
            disconnectIfRequested()
            // On a lost connection libmosquitto has closed the socket and called
            // on_disconnect; the next turn reconnects.
        }
    }
}
