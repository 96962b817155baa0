// ThreadSanitizer builds (-DGITFS_TSAN, tools/tsan) lock with a pthread_mutex_t TSan sees; this module-level
// name shadows Synchronization.Mutex in every file of the module. Ordinary builds compile nothing here.
#if GITFS_TSAN
import Basics
typealias Mutex<Value: ~Copyable> = PthreadMutex<Value>
#endif
