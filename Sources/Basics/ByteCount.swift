/// Byte counts for people, in powers of 1024. Stateless: thread-safe.
public enum ByteCount {
    /// How a count is written.
    public enum Style: Sendable {
        /// "512 B", "1.5 KiB", "2.0 MiB" (messages and reports).
        case binary
        /// "512B", "1.5K", "2.0M": the suffixes size options take (tables such as `gitfs list`).
        case short
    }

    /// `n` with one decimal in the largest unit it reaches (B, KiB, MiB, GiB, TiB).
    public static func format(_ n: Int, style: Style = .binary) -> String {
        let units = style == .binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "K", "M", "G", "T"]
        let space = style == .binary ? " " : ""
        var v = Double(n)
        var i = 0
        while v >= 1024 || v <= -1024, i < units.count - 1 { v /= 1024; i += 1 }
        if i == 0 { return "\(n)\(space)B" }
        let tenths = Int((v * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        return "\(sign)\(abs(tenths) / 10).\(abs(tenths) % 10)\(space)\(units[i])"
    }
}
