import Resolver
import FuseServer
enum GitFSPlaceholder {}
