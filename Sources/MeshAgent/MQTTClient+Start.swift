import Logging
import Mosquitto
import Synchronization

extension MQTTClient {
    /// Starts the client's loop. A broker not reachable yet is not an error: the loop keeps
    /// retrying, so it is logged as a warning; only a client that cannot start at all is.
    func startInBackground(logger: Logger, link: String) {
        do {
            if let error = try start() {
                logger.warning("\(link): broker not reachable yet; retrying in the background", metadata: ["error": "\(error)"])
            }
        } catch {
            logger.error("\(link) failed to start", metadata: ["error": "\(error)"])
        }
    }

    /// Runs `body`, then closes the client off the cooperative pool (`closeAsync`): for a
    /// short-lived client in async code, where `defer { close() }` would block a pool thread
    /// on the join of the client's loop thread.
    func closing<T>(after body: () async -> T) async -> T {
        let result = await body()
        await closeAsync()
        return result
    }

    /// Starts a one-shot connection (the agent's takeover and adoption clients) and waits
    /// until `deadline` for its CONNACK, which the client's `connected` event stores in
    /// `connack` (-1 until then). Nil once the broker accepted it, else why not.
    func startAwaitingConnack(_ connack: borrowing Atomic<Int32>, deadline: ContinuousClock.Instant, timeout: Duration) async -> String? {
        do {
            if let error = try start() { return "\(error)" }
        } catch {
            return "\(error)"
        }
        while connack.load(ordering: .acquiring) < 0 {
            if ContinuousClock.now >= deadline || Task.isCancelled { return "no CONNACK within \(timeout)" }
            try? await Task.sleep(for: .milliseconds(2))
        }
        let rc = connack.load(ordering: .acquiring)
        return rc == 0 ? nil : "local broker refused the connection (reason code \(rc))"
    }

    /// Sends DISCONNECT and waits (at most 2 s) for the connection to close.
    func disconnectAwaitingClose() async {
        disconnect()
        let closeBy = ContinuousClock.now.advanced(by: .seconds(2))
        while isConnected && ContinuousClock.now < closeBy && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(2)) }
    }
}
