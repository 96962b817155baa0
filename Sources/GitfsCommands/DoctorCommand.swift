import ArgumentParser
import Doctor
import Foundation
import GitStore
import Settings

/// `gitfs doctor [--json] [--network]`: one line per check with the fix; exit 1 when something is wrong.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check FUSE access, mounts, the home, the cache and the mirrors; say how to fix each problem.",
        discussion: "Exit status 1 when a check found a problem (warnings do not count).")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON: a list of {check, status, message, fix}.") var json = false
    @Flag(help: "Also check that each mirror's origin answers.") var network = false
    @Flag(help: "Check as if --allow-other were given.") var allowOther = false

    func run() throws {
        let home = Home(path: global.resolvedHome)
        let settings = try? HomeSettings(home: home.path)
        let configured = (allowOther ? "true" : settings?.effective(.allowOther)).flatMap(SettingKey.bool) ?? false
        let verdicts = Doctor(home: home, allowOther: configured, network: network).run()
        if json {
            let objects: [[String: Any]] = verdicts.map {
                ["check": $0.check, "status": $0.status.rawValue, "message": $0.message, "fix": $0.fix ?? NSNull()]
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for v in verdicts { print(v.line) }
        }
        if verdicts.contains(where: { $0.status == .problem }) { throw ExitCode(1) }
    }
}
