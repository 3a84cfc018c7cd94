import Foundation
import MeshHarness

/// The failover bench's three outputs: a table for the terminal, a CSV for tools, and an
/// SVG timeline an operator can take in at a glance.
enum FailoverOutput {
    static func f(_ v: Double?, _ digits: Int = 1) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "-" }

    static func table(_ a: FailoverAnalysis, clients: Int) -> String {
        // The adoption gap column only when sessions were adopted (persistent-session runs).
        let gap = a.recoveries.contains { $0.adopted > 0 }
        var out = "  s  phase   publ   ack/s  deliv/s  dup  lost-ack  missed" + (gap ? "  (gap)" : "") + "  clients  lat p50  lat p99  lat max (ms)\n"
        for s in a.seconds {
            func pad(_ t: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - t.count)) + t }
            let phase = s.phase.padding(toLength: 6, withPad: " ", startingAt: 0)
            out += String(format: "%3d  ", s.second) + phase + String(format: " %5d  %6d  %7d  %3d  %8d  %6d", s.published,
                          s.acknowledged, s.delivered, s.duplicates, s.lostAcknowledged, s.missedOther)
                + (gap ? String(format: "  %5d", s.adoptionGap) : "") + String(format: "  %3d/%-3d", s.clientsConnected, clients)
                + "  " + pad(f(s.latencyP50), 7) + "  " + pad(f(s.latencyP99), 7) + "  " + pad(f(s.latencyMax), 7) + "\n"
        }
        if gap { out += "(gap: deliveries published between the kill and the adoption of the subscriber's session, included in missed)\n" }
        return out
    }

    static func summary(_ a: FailoverAnalysis) -> String {
        var lines: [String] = []
        lines.append("published \(a.published), acknowledged \(a.acknowledged); deliveries that had to arrive \(a.expectedPairs)")
        lines.append("LOST although acknowledged by a surviving broker: \(a.lostAcknowledged)" + (a.lostExamples.isEmpty ? "" : " e.g. \(a.lostExamples.prefix(8).joined(separator: ", "))"))
        lines.append("not promised: with the killed broker \(a.withKilledBroker), subscriber had no session \(a.noSession); never acknowledged \(a.unacknowledged)")
        lines.append("duplicates \(a.duplicates) (QoS 1 redelivery after reconnect)")
        for (name, l) in [("before", a.latencyBefore), ("fault", a.latencyDuring), ("after", a.latencyAfter)] {
            lines.append("latency \(name): p50 \(f(l.p50)) ms, p99 \(f(l.p99)) ms, max \(f(l.max)) ms (\(l.count) deliveries)")
        }
        for r in a.recoveries where r.kind == .partition || r.kind == .heal {
            lines.append("\(r.label) at \(f(r.atSeconds)) s: \(r.observeLabel ?? "observed") after \(f(r.observedAfter, 2)) s; \(r.affected.count) client connections broke")
        }
        for r in a.recoveries where r.kind == .broker || r.kind == .loadBalancer {
            var line = "\(r.label) at \(f(r.atSeconds)) s: \(r.affected.count) clients cut; back and publishing after \(f(r.publishersBack, 2)) s, subscribed again after \(f(r.subscribersBack, 2)) s, longest reconnect \(f(r.longestReconnect, 2)) s"
            if let label = r.observeLabel { line += "; \(label) after \(f(r.observedAfter, 2)) s" }
            if !r.notBack.isEmpty { line += "; NOT BACK: \(r.notBack.joined(separator: ", "))" }
            if !r.stickTableMismatch.isEmpty { line += "; stick table disagreed about \(r.stickTableMismatch.joined(separator: ", "))" }
            lines.append(line)
            if r.kind == .broker && (r.adopted > 0 || r.resumed > 0 || !r.notResumed.isEmpty) {
                lines.append("  sessions: \(r.resumed) subscribers came back with session present, \(r.notResumed.count) without; \(r.adopted) adopted; "
                             + "loss window kill → adoption \(r.adoptionWindow.map { "\(f($0.min, 2))–\(f($0.max, 2)) s" } ?? "-"), "
                             + "deliveries published in it (lost) \(r.lostInAdoptionWindow)")
            }
            if r.kind == .restart { lines.append("  duplicates after it: \(r.duplicatesAfter)") }
        }
        for n in a.notes { lines.append("note: \(n)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The targets of issue 3, judged on this run.
    static func targets(_ a: FailoverAnalysis) -> (text: String, met: Bool) {
        var lines: [String] = []
        var met = true
        func judge(_ ok: Bool, _ text: String) {
            lines.append((ok ? "  [ok]   " : "  [MISS] ") + text)
            met = met && ok
        }
        for r in a.recoveries where r.kind != .restart {
            if r.kind == .broker || r.kind == .loadBalancer {
                let limit = r.kind == .broker ? 3.0 : 5.0
                if r.adopted > 0 {
                    // Persistent-session subscribers are held at HAProxy until their session is
                    // adopted (by design: otherwise they would start over with an empty session);
                    // the time target applies to the others.
                    let back = r.notBack.isEmpty ? r.publishersBack : nil
                    judge((back ?? .infinity) <= limit, "\(r.label): publishers back and publishing in \(f(back, 2)) s (target ≤ \(Int(limit)) s)")
                    lines.append("         subscribers held until their sessions were adopted, back with them in \(f(r.subscribersBack, 2)) s")
                } else {
                    let back = r.notBack.isEmpty ? r.clientsBack : nil
                    judge((back ?? .infinity) <= limit, "\(r.label): clients back and publishing in \(f(back, 2)) s (target ≤ \(Int(limit)) s)")
                }
            }
            if let label = r.observeLabel, let target = r.observeTarget {
                judge((r.observedAfter ?? .infinity) <= target, "\(r.label): \(label) after \(f(r.observedAfter, 2)) s (target ≤ \(f(target, 0)) s)")
            }
        }
        for r in a.recoveries where r.kind == .broker && (r.adopted > 0 || !r.notResumed.isEmpty) {
            judge(r.notResumed.isEmpty, "\(r.label): subscribers back with their session \(r.resumed) of \(r.resumed + r.notResumed.count) (target all)")
        }
        judge(a.lostAcknowledged == 0, "QoS 1 messages acknowledged by a surviving broker and lost: \(a.lostAcknowledged) (target 0)")
        return ("targets:\n" + lines.joined(separator: "\n") + "\n", met)
    }

    static func csv(_ a: FailoverAnalysis) -> String {
        var out = "second,phase,published,acknowledged,delivered,duplicates,lost_acknowledged,missed_not_promised,adoption_gap,clients_connected,latency_p50_ms,latency_p99_ms,latency_max_ms\n"
        for s in a.seconds {
            out += "\(s.second),\(s.phase),\(s.published),\(s.acknowledged),\(s.delivered),\(s.duplicates),\(s.lostAcknowledged),\(s.missedOther),\(s.adoptionGap),\(s.clientsConnected),\(f(s.latencyP50, 2)),\(f(s.latencyP99, 2)),\(f(s.latencyMax, 2))\n"
        }
        return out
    }

    /// A machine-readable summary (the netns test reads it).
    static func json(_ a: FailoverAnalysis) throws -> Data {
        let recoveries: [[String: Any]] = a.recoveries.map { r in
            var d: [String: Any] = ["label": r.label, "kind": r.kind.rawValue, "at_s": r.atSeconds, "affected": r.affected,
                                    "not_back": r.notBack, "stick_table_mismatch": r.stickTableMismatch]
            if let v = r.clientsBack { d["clients_back_s"] = v }
            if let v = r.publishersBack { d["publishers_back_s"] = v }
            if let v = r.subscribersBack { d["subscribers_back_s"] = v }
            if let v = r.longestReconnect { d["longest_reconnect_s"] = v }
            if let v = r.observedAfter { d["observed_after_s"] = v }
            if let v = r.observeLabel { d["observed"] = v }
            if let v = r.observeTarget { d["observed_target_s"] = v }
            if r.kind == .broker {
                d["sessions_resumed"] = r.resumed
                d["sessions_not_resumed"] = r.notResumed
                d["sessions_adopted"] = r.adopted
                d["lost_in_adoption_window"] = r.lostInAdoptionWindow
                if let w = r.adoptionWindow { d["adoption_window_s"] = [w.min, w.max] }
            }
            if r.kind == .restart { d["duplicates_after"] = r.duplicatesAfter }
            return d
        }
        let summary: [String: Any] = [
            "published": a.published, "acknowledged": a.acknowledged, "expected_deliveries": a.expectedPairs,
            "lost_acknowledged": a.lostAcknowledged, "with_killed_broker": a.withKilledBroker, "no_session": a.noSession, "adoption_gap": a.adoptionGap,
            "unacknowledged": a.unacknowledged, "duplicates": a.duplicates, "unmatched_acks": a.unmatchedAcks,
            "latency_before_p99_ms": a.latencyBefore.p99 ?? -1, "latency_after_p99_ms": a.latencyAfter.p99 ?? -1,
            "faults": recoveries, "notes": a.notes,
        ]
        return try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
    }

    /// Two stacked charts sharing the time axis: throughput (acknowledged/s, delivered/s)
    /// and latency (p50, p99), with a red line and label at each fault, the fault phase
    /// shaded, and lost acknowledged messages as red marks on the time axis.
    static func svg(_ a: FailoverAnalysis, title: String) -> String {
        let width = 960.0, left = 70.0, right = 20.0, plotW = width - left - right
        let top1 = 50.0, h1 = 200.0, top2 = top1 + h1 + 60, h2 = 160.0, height = top2 + h2 + 60
        let n = max(a.seconds.count, 1)
        func x(_ second: Double) -> Double { left + plotW * second / Double(n) }
        let maxRate = Double(a.seconds.map { max($0.acknowledged, $0.delivered) }.max() ?? 1).nonZero
        let maxLatency = (a.seconds.compactMap(\.latencyP99).max() ?? 1).nonZero
        func y1(_ v: Double) -> Double { top1 + h1 - h1 * v / maxRate }
        func y2(_ v: Double) -> Double { top2 + h2 - h2 * min(v, maxLatency) / maxLatency }
        func path(_ points: [(Double, Double)], _ color: String, dashed: Bool = false) -> String {
            guard !points.isEmpty else { return "" }
            let d = points.enumerated().map { i, p in "\(i == 0 ? "M" : "L")\(fmt(p.0)),\(fmt(p.1))" }.joined(separator: " ")
            return "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5,3\"" : "")/>\n"
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"22\" font-size=\"16\" font-weight=\"bold\">\(escape(title))</text>\n"
        // Fault phase shading.
        for sec in a.seconds where sec.phase == "fault" {
            s += "<rect x=\"\(fmt(x(Double(sec.second))))\" y=\"\(top1)\" width=\"\(fmt(plotW / Double(n)))\" height=\"\(fmt(top2 + h2 - top1))\" fill=\"#fde8e8\"/>\n"
        }
        // Axes and grid.
        for (top, h, maxV, unit) in [(top1, h1, maxRate, "msg/s"), (top2, h2, maxLatency, "ms")] {
            s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(h)\" fill=\"none\" stroke=\"#888\"/>\n"
            for k in 0...4 {
                let v = maxV * Double(k) / 4, yy = top + h - h * Double(k) / 4
                s += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(fmt(yy))\" y2=\"\(fmt(yy))\" stroke=\"#eee\"/>\n"
                s += "<text x=\"\(left - 6)\" y=\"\(fmt(yy + 4))\" text-anchor=\"end\">\(fmt(v, 0))</text>\n"
            }
            s += "<text x=\"12\" y=\"\(fmt(top + h / 2))\" transform=\"rotate(-90 12 \(fmt(top + h / 2)))\" text-anchor=\"middle\">\(unit)</text>\n"
        }
        let step = max(1, n / 15)
        for k in stride(from: 0, through: n, by: step) {
            s += "<text x=\"\(fmt(x(Double(k))))\" y=\"\(fmt(top2 + h2 + 16))\" text-anchor=\"middle\">\(k)</text>\n"
        }
        s += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(top2 + h2 + 34))\" text-anchor=\"middle\">seconds</text>\n"
        // Series (plotted at the middle of each second).
        let mid = a.seconds.map { Double($0.second) + 0.5 }
        s += path(zip(mid, a.seconds).map { (x($0), y1(Double($1.acknowledged))) }, "#1f77b4")
        s += path(zip(mid, a.seconds).map { (x($0), y1(Double($1.delivered))) }, "#2ca02c", dashed: true)
        s += path(zip(mid, a.seconds).compactMap { m, sec in sec.latencyP50.map { (x(m), y2($0)) } }, "#9467bd")
        s += path(zip(mid, a.seconds).compactMap { m, sec in sec.latencyP99.map { (x(m), y2($0)) } }, "#ff7f0e")
        // Lost acknowledged messages.
        for sec in a.seconds where sec.lostAcknowledged > 0 {
            s += "<circle cx=\"\(fmt(x(Double(sec.second) + 0.5)))\" cy=\"\(fmt(top1 + h1))\" r=\"5\" fill=\"red\"><title>\(sec.lostAcknowledged) lost</title></circle>\n"
        }
        // Where the mesh adopted the killed broker's sessions: the loss window, shaded orange.
        for r in a.recoveries {
            guard let w = r.adoptionWindow else { continue }
            let x0 = x(r.atSeconds), x1 = x(r.atSeconds + w.max)
            s += "<rect x=\"\(fmt(x0))\" y=\"\(top1)\" width=\"\(fmt(max(1, x1 - x0)))\" height=\"\(fmt(h1))\" fill=\"#ff7f0e\" fill-opacity=\"0.18\"/>\n"
            s += "<line x1=\"\(fmt(x1))\" x2=\"\(fmt(x1))\" y1=\"\(top1)\" y2=\"\(fmt(top1 + h1))\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(fmt(x1 + 4))\" y=\"\(fmt(top1 + h1 - 8))\" fill=\"#c25a00\">\(r.adopted) sessions adopted after \(f(w.max, 2)) s (\(r.lostInAdoptionWindow) deliveries lost in the window)</text>\n"
        }
        // Fault markers.
        for r in a.recoveries {
            let xx = x(r.atSeconds)
            s += "<line x1=\"\(fmt(xx))\" x2=\"\(fmt(xx))\" y1=\"\(top1 - 8)\" y2=\"\(fmt(top2 + h2))\" stroke=\"red\" stroke-width=\"2\" stroke-dasharray=\"6,3\"/>\n"
            let note = r.kind == .broker || r.kind == .loadBalancer ? "back in \(f(r.clientsBack, 1)) s"
                : r.observeLabel.map { "\($0): \(f(r.observedAfter, 1)) s" } ?? ""
            s += "<text x=\"\(fmt(xx + 4))\" y=\"\(top1 - 10)\" fill=\"red\">\(escape(r.label))\(note.isEmpty ? "" : " (\(escape(note)))")</text>\n"
        }
        // Legends.
        let legend1: [(String, String)] = [("#1f77b4", "acknowledged/s (publishers)"), ("#2ca02c", "delivered/s (subscribers)")]
        let legend2: [(String, String)] = [("#9467bd", "latency p50"), ("#ff7f0e", "latency p99 (end to end)")]
        for (i, (color, text)) in legend1.enumerated() {
            s += "<rect x=\"\(fmt(left + 10 + Double(i) * 240))\" y=\"\(top1 + 8)\" width=\"14\" height=\"4\" fill=\"\(color)\"/><text x=\"\(fmt(left + 28 + Double(i) * 240))\" y=\"\(top1 + 14)\">\(text)</text>\n"
        }
        for (i, (color, text)) in legend2.enumerated() {
            s += "<rect x=\"\(fmt(left + 10 + Double(i) * 240))\" y=\"\(top2 + 8)\" width=\"14\" height=\"4\" fill=\"\(color)\"/><text x=\"\(fmt(left + 28 + Double(i) * 240))\" y=\"\(top2 + 14)\">\(text)</text>\n"
        }
        s += "<text x=\"\(left)\" y=\"\(fmt(height - 8))\" fill=\"#555\">shaded: fault until every cut client is back (+1 s), a partition until its heal; red dots: QoS 1 messages acknowledged by a surviving broker and lost (\(a.lostAcknowledged))</text>\n"
        s += "</svg>\n"
        return s
    }

    private static func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
    private static func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

private extension Double {
    var nonZero: Double { self > 0 ? self : 1 }
}
