@preconcurrency import Dispatch
import Foundation

/// Turns SIGINT/SIGTERM into an awaitable event.
package final class InterruptFlag: @unchecked Sendable {
    // Kept only so the sources stay alive; never touched after init.
    private let sources: [DispatchSourceSignal]
    private let stream: AsyncStream<Void>

    package init() {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        self.stream = stream
        var list: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { continuation.yield() }
            source.resume()
            list.append(source)
        }
        sources = list
    }

    package func wait() async {
        for await _ in stream { return }
    }
}
