import CZstd
enum ContentCachePlaceholder { static func v() -> UInt32 { ZSTD_versionNumber() } }
