import GitStore
import ContentCache
enum ResolverPlaceholder {}
