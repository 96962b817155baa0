import Testing

/// Expects what every refused command gives: exit `status` and exactly one line on standard error,
/// starting `gitfs: error: `.
public func expectOneErrorLine(_ r: RunResult, status: Int32 = 1, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == status, "\(what): exit \(r.status), stderr \(r.stderr)", sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1 && lines.first?.hasPrefix("gitfs: error: ") == true, "\(what): stderr \(r.stderr)",
            sourceLocation: sourceLocation)
}
