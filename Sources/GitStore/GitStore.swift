import CGit2
/// Placeholder.
enum GitStorePlaceholder { static func v() -> Int32 { git_libgit2_init() } }
