import Foundation

/// Parses sizes with K, M, G suffixes (powers of 1024) and durations with s, m, h, d suffixes.
public enum Units {
    /// "512", "64K", "10M", "2G" -> bytes; nil when malformed.
    public static func size(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let mult: Int
        var digits = Substring(text)
        switch last {
        case "K", "k": mult = 1 << 10; digits = digits.dropLast()
        case "M", "m": mult = 1 << 20; digits = digits.dropLast()
        case "G", "g": mult = 1 << 30; digits = digits.dropLast()
        default: mult = 1
        }
        guard let n = Int(digits), n >= 0 else { return nil }
        return n * mult
    }

    /// "30s", "15m", "2h", "7d" (a bare number is seconds) -> seconds; nil when malformed.
    public static func seconds(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let mult: Int
        var digits = Substring(text)
        switch last {
        case "s": mult = 1; digits = digits.dropLast()
        case "m": mult = 60; digits = digits.dropLast()
        case "h": mult = 3600; digits = digits.dropLast()
        case "d": mult = 86400; digits = digits.dropLast()
        default: mult = 1
        }
        guard let n = Int(digits), n >= 0 else { return nil }
        return n * mult
    }
}
