// swift-tools-version: 6.0
// Linux only: the code uses Glibc, eventfd and glibc's allocator controls (no platforms entry).
import PackageDescription

let package = Package(
    name: "mosquitto-mesh",
    products: [
        .executable(name: "mosquitto-mesh", targets: ["mosquitto-mesh"]),
        .library(name: "MeshCore", targets: ["MeshCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        // Tests only: property-based checks (MeshAgentTests).
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
    ],
    targets: [
        // libmosquitto, wrapped once. Only the `Mosquitto` target imports it.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // glibc's allocator controls (malloc.h), for ProcessMemory only.
        .systemLibrary(name: "CGlibcMalloc"),
        // Pure decisions: topics, the subscription tree, log parsing, sessions, adverts, routing. No I/O.
        .target(name: "MeshCore"),
        // A small, safe MQTT client over libmosquitto.
        .target(name: "Mosquitto", dependencies: ["CMosquitto"]),
        // The daemon's parts: links, forwarder, state store, health and metrics.
        .target(
            name: "MeshAgent",
            dependencies: [
                "MeshCore", "Mosquitto", "CGlibcMalloc",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Starts and stops real brokers, agents and HAProxy for tests and benchmarks.
        .target(
            name: "MeshHarness",
            dependencies: ["Mosquitto", "MeshCore", .product(name: "UnixSignals", package: "swift-service-lifecycle")]
        ),
        // Benchmarks and failover measurement on top of the harness: scenarios, delivery
        // trackers, reports, the failover runner and its analysis (the CLI only parses `bench`).
        .target(
            name: "MeshBench",
            dependencies: [
                "MeshHarness", "MeshCore", "Mosquitto",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "mosquitto-mesh",
            dependencies: [
                "MeshAgent", "MeshBench", "MeshHarness", "MeshCore", "Mosquitto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // MeshHarness for its seeded generator only.
        // In-process tests of the C boundary's types (no brokers).
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "CMosquitto"]),
        .testTarget(name: "MeshCoreTests", dependencies: ["MeshCore", "MeshHarness"]),
        // In-process tests of the agent's parts (no brokers).
        .testTarget(name: "MeshAgentTests", dependencies: [
            "MeshAgent", "MeshCore", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "PropertyBased", package: "swift-property-based"),
            .product(name: "InMemoryLogging", package: "swift-log"),
        ]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["MeshAgent", "MeshBench", "MeshHarness", "MeshCore", "Mosquitto", "mosquitto-mesh"]
        ),
    ]
)
