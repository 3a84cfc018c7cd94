import Logging
import Mosquitto

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
}
