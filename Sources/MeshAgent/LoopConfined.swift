import Foundation

/// A value used only on one thread (a link's loop thread), so it needs no lock. The first
/// thread that touches it owns it; debug builds check every later access, as swift-nio's
/// `NIOLoopBound` checks its event loop.
final class LoopConfined<Value>: @unchecked Sendable {
    private var value: Value
    private var owner: pthread_t?

    init(_ value: Value) { self.value = value }

    @inline(__always)
    func withValue<T>(_ body: (inout Value) -> T) -> T {
        #if DEBUG
        let me = pthread_self()
        if let owner {
            assert(pthread_equal(owner, me) != 0, "LoopConfined value used off its loop thread")
        } else {
            owner = me
        }
        #endif
        return body(&value)
    }
}
