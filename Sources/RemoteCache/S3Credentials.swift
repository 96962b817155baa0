import Foundation

/// AWS credentials for signing S3 requests: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` from the environment, else the `AWS_PROFILE` (default "default") section of
/// `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`). A value; never printed.
struct S3Credentials: Sendable {
    let accessKey: String
    let secretKey: String
    let sessionToken: String?

    /// The credentials in force, or one line saying where they were looked for.
    static func load(environment env: [String: String] = ProcessInfo.processInfo.environment) throws(RemoteError) -> S3Credentials {
        if let id = env["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
            return S3Credentials(accessKey: id, secretKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        }
        let profile = env["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        let home = env["HOME"] ?? NSHomeDirectory()
        let file = env["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        if let data = FileManager.default.contents(atPath: file) {
            var section = ""
            var values: [String: String] = [:]
            for raw in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("[") && line.hasSuffix("]") {
                    section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                    continue
                }
                guard section == profile, !line.hasPrefix("#"), !line.hasPrefix(";"), let eq = line.firstIndex(of: "=") else { continue }
                values[line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            }
            if let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] {
                return S3Credentials(accessKey: id, secretKey: secret, sessionToken: values["aws_session_token"])
            }
        }
        throw RemoteError(.invalid, "no S3 credentials for the remote cache: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile '\(profile)' in \(file)")
    }
}
