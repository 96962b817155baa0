import Foundation

/// The settings kept in a home, in `<home>/config`: one `key = value` per line, `#` comments. Lines of
/// keys this gitfs does not know are kept as they are when the file is rewritten. The file is written
/// to a temporary file (mode 0600: values may hold credentials) and renamed into place, so readers see
/// the old or the new file, never a part. A value type: thread-safe; two writers at once keep the last.
public struct HomeSettings: Sendable {
    public let path: String
    /// Known and unknown keys in file order.
    public private(set) var entries: [(key: String, value: String)]

    /// The settings file of the home at `homePath`.
    public static func path(home homePath: String) -> String { homePath + "/config" }

    /// Reads the home's settings; none when the file does not exist. Throws when it exists but cannot be read.
    public init(home homePath: String) throws(SettingsError) {
        path = Self.path(home: homePath)
        entries = []
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingsError("cannot read \(path): \(String(cString: strerror(errno))); check its permissions")
        }
        for raw in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if let i = entries.firstIndex(where: { $0.key == key }) { entries[i].value = value } else { entries.append((key, value)) }
        }
    }

    /// The stored value of `key`, if set.
    public func stored(_ key: SettingKey) -> String? { entries.first { $0.key == key.name }?.value }

    /// The value in force: `flag` when given, else the environment variable, else the stored value.
    public func effective(_ key: SettingKey, flag: String? = nil) -> String? {
        if let flag { return flag }
        if let env = ProcessInfo.processInfo.environment[key.environment], !env.isEmpty { return env }
        return stored(key)
    }

    /// Sets (or with nil removes) `key` and rewrites the file.
    public mutating func set(_ key: SettingKey, _ value: String?) throws(SettingsError) {
        if let value {
            guard !value.contains("\n") else { throw SettingsError("a value cannot span lines") }
            if let i = entries.firstIndex(where: { $0.key == key.name }) { entries[i].value = value } else { entries.append((key.name, value)) }
        } else {
            entries.removeAll { $0.key == key.name }
        }
        try save()
    }

    private func save() throws(SettingsError) {
        let dir = (path as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw SettingsError("cannot create the home \(dir): \(error.localizedDescription)")
        }
        let text = "# gitfs settings (gitfs config KEY VALUE); flags and environment variables override them\n"
            + entries.map { "\($0.key) = \($0.value)\n" }.joined()
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SettingsError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(tmp)
                throw SettingsError("cannot write \(tmp): \(String(cString: strerror(e)))")
            }
            done += n
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw SettingsError("cannot replace \(path): \(String(cString: strerror(e)))")
        }
    }
}

/// Why settings could not be read or written: one line saying what to do.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
