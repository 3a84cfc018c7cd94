import Foundation
import Logging
import Synchronization

/// A blocking IPv4 TCP listener on its own thread, for the two tiny endpoints the agent
/// serves (agent-check, /metrics). A thread with blocking accept answers even when the
/// async runtime is busy, and needs no event-loop dependency.
final class TCPListener: Sendable {
    private let fd: Int32
    private let running = Atomic<Bool>(true)
    let endpoint: Endpoint

    /// Binds and listens; the error names the setting (`key`) and the address.
    init(listen: Endpoint, key: String) throws(ConfigurationError) {
        endpoint = listen
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConfigurationError(key: key, value: listen.description, reason: "socket failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(listen.port).bigEndian)
        let host = listen.host == "localhost" ? "127.0.0.1" : listen.host
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(fd)
            throw ConfigurationError(key: key, value: listen.description, reason: "host must be an IPv4 address")
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw ConfigurationError(key: key, value: listen.description, reason: "cannot listen: \(String(cString: strerror(e)))")
        }
        self.fd = fd
    }

    /// Serves each accepted connection with `handle` (which must not keep the descriptor), then closes it.
    func start(name: String, handle: @escaping @Sendable (Int32) -> Void) {
        let thread = Thread { [self] in
            while running.load(ordering: .relaxed) {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    break
                }
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                handle(client)
                close(client)
            }
        }
        thread.name = name
        thread.start()
    }

    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// Writes all of `text` (best effort; the peer may have gone).
    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}
