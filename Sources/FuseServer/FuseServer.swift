import CFuse
enum FuseServerPlaceholder { static func v() -> Int32 { fuse_version() } }
