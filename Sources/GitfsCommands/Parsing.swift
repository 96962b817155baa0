import ArgumentParser

/// Parses sizes with K, M, G suffixes (powers of 1024) and durations with s, m, h, d suffixes into
/// non-negative `Int`s; anything else (a sign, no digits, a value over `Int.max`) is refused with a
/// reason. Stateless: thread-safe.
public enum Units {
    /// "512", "64K", "10M", "2G" -> bytes.
    public static func size(_ text: String) throws(UnitError) -> Int {
        try parse(text, units: [("K", 1 << 10), ("k", 1 << 10), ("M", 1 << 20), ("m", 1 << 20), ("G", 1 << 30), ("g", 1 << 30)],
                  kind: .size)
    }

    /// "30s", "15m", "2h", "7d" (a bare number is seconds) -> seconds.
    public static func seconds(_ text: String) throws(UnitError) -> Int {
        try parse(text, units: [("s", 1), ("m", 60), ("h", 3600), ("d", 86400)], kind: .duration)
    }

    private static func parse(_ text: String, units: [(Character, Int)], kind: UnitError.Kind) throws(UnitError) -> Int {
        var digits = Substring(text)
        var multiplier = 1
        if let last = text.last, let unit = units.first(where: { $0.0 == last }) {
            multiplier = unit.1
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw UnitError(text: text, kind: kind, tooLarge: false)
        }
        guard let n = Int(digits) else { throw UnitError(text: text, kind: kind, tooLarge: true) }
        let (value, overflow) = n.multipliedReportingOverflow(by: multiplier)
        if overflow { throw UnitError(text: text, kind: kind, tooLarge: true) }
        return value
    }
}

/// Why a size or duration was refused; `description` is one line saying what is accepted.
public struct UnitError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case size, duration }
    public let text: String
    public let kind: Kind
    /// Well-formed, but over `Int.max` bytes or seconds.
    public let tooLarge: Bool

    public var description: String {
        switch (kind, tooLarge) {
        case (.size, false): return "'\(text)' is not a size: use a number with an optional K, M or G suffix, such as 512M or 2G"
        case (.size, true): return "'\(text)' is too large: sizes go up to \(Int.max >> 30)G"
        case (.duration, false): return "'\(text)' is not a duration: use a number with an optional s, m, h or d suffix, such as 30m or 7d"
        case (.duration, true): return "'\(text)' is too long: durations go up to \(Int.max / 86400)d"
        }
    }
}

extension Units {
    /// Checks an option's value in `validate()`: a bad one is a usage error (exit 2) naming the option.
    static func validateSize(_ text: String?, option: String) throws(ValidationError) {
        guard let text else { return }
        do { _ = try size(text) } catch { throw ValidationError("\(option): \(error)") }
    }

    /// Like `validateSize`, for durations.
    static func validateDuration(_ text: String?, option: String) throws(ValidationError) {
        guard let text else { return }
        do { _ = try seconds(text) } catch { throw ValidationError("\(option): \(error)") }
    }
}
