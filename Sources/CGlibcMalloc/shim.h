// glibc's allocator controls, which the Swift Glibc module does not import.
// Only MeshAgent's ProcessMemory uses this module.
#include <malloc.h>
