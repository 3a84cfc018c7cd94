import Foundation
import Synchronization

/// A child process that the harness starts and always stops: real `mosquitto`, real
/// agents, real HAProxy. Spawned with posix_spawn and a cleared signal mask, because
/// Foundation's `Process` started from a concurrency thread leaves the child's signals
/// blocked (mosquitto would then ignore SIGTERM).
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let executable: String
    public let logPath: String?
    private let exitStatus = Mutex<Int32?>(nil)

    public struct SpawnError: Error, CustomStringConvertible {
        public let executable: String
        public let errno: Int32
        public var description: String { "cannot start \(executable): \(String(cString: strerror(errno)))" }
    }

    /// Starts `executable` with `arguments`; stdout and stderr go to `logPath` (appended) or /dev/null.
    public init(executable: String, arguments: [String], environment: [String: String]? = nil, logPath: String? = nil) throws {
        self.executable = executable
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let target = logPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 1, target, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of this process: its sockets lack close-on-exec (swift-nio's among
        // them), and a child holding one keeps a closed listener listening and a closed
        // connection open for whoever runs beside it in the same test process.
        // (glibc ≥ 2.34 has it; Swift's Glibc module does not show it.)
        if let closeFrom = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(closeFrom, to: CloseFrom.self)(&actions, 3)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, env)
        guard rc == 0 else { throw SpawnError(executable: executable, errno: rc) }
        pid = child
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    /// Reaps the child if it has exited; true while it runs.
    public var isRunning: Bool {
        exitStatus.withLock { status in
            if status != nil { return false }
            var raw: Int32 = 0
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid {
                status = raw
                return false
            }
            return r == 0
        }
    }

    /// The raw wait status once exited.
    public var status: Int32? {
        _ = isRunning
        return exitStatus.withLock { $0 }
    }

    /// Exit code if the process exited normally.
    public var exitCode: Int32? {
        guard let s = status, (s & 0x7f) == 0 else { return nil }
        return (s >> 8) & 0xff
    }

    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// Waits (bounded) for the process to exit. Returns whether it did.
    @discardableResult
    public func waitForExit(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while isRunning {
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    public func stop(grace: Duration = .seconds(10)) async {
        signal(SIGTERM)
        if await waitForExit(timeout: grace) { return }
        signal(SIGKILL)
        await waitForExit(timeout: .seconds(5))
    }

    /// The process's log so far (for failure messages).
    public func logTail(maxBytes: Int = 4000) -> String {
        guard let logPath, let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data.suffix(maxBytes), as: UTF8.self)
    }
}

/// The one child process a harness component (broker, agent, HAProxy) runs at a time:
/// `stop` and `kill9` end it and forget it, so the component can be started again.
public final class ProcessSlot: Sendable {
    private let current = LockedValue<ChildProcess?>(nil)

    public init() {}

    public var child: ChildProcess? { current.value }
    public var pid: pid_t? { current.value?.pid }
    public var isRunning: Bool { current.value?.isRunning ?? false }

    public func hold(_ child: ChildProcess) { current.value = child }

    /// kill -9: no clean shutdown (the fault the tests inject).
    public func kill9() async {
        guard let child = current.value else { return }
        child.signal(SIGKILL)
        await child.waitForExit(timeout: .seconds(5))
        current.value = nil
    }

    /// SIGTERM (SIGKILL after `grace`); the exit code when it exited normally.
    @discardableResult
    public func stop(grace: Duration = .seconds(10)) async -> Int32? {
        guard let child = current.value else { return nil }
        await child.stop(grace: grace)
        current.value = nil
        return child.exitCode
    }
}
