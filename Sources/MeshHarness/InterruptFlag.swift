import UnixSignals

/// Turns SIGINT/SIGTERM into an awaitable event.
package final class InterruptFlag: Sendable {
    private let stream: AsyncStream<Void>

    package init() async {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        self.stream = stream
        Task {
            for await _ in signals { continuation.yield() }
        }
    }

    package func wait() async {
        for await _ in stream { return }
    }
}
