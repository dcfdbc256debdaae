/* bm_strerror: the library's own codes from one table, everything else through strerror. */
#include "bucketmap.h"
#include "common/bm_api.h"

#include <string.h>

static const char *const messages[] = {
    [-(BM_ENOTFOUND + 10000)] = "key not found",
    [-(BM_EINVAL + 10000)] = "invalid argument",
    [-(BM_ETOOBIG + 10000)] = "value larger than BM_MAX_VALUE_BYTES",
    [-(BM_EBUSY + 10000)] = "call not allowed from inside this callback",
    [-(BM_ECORRUPT + 10000)] = "map file or restart file is corrupt",
    [-(BM_EVERSION + 10000)] = "restart file or map file has an unsupported format version",
    [-(BM_EMISMATCH + 10000)] =
        "restart file belongs to a map with another elem_size, max_buckets, max_search or drive count",
    [-(BM_EOVERFLOW + 10000)] = "refcount would overflow (addref at UINT64_MAX or unref at 0)",
    [-(BM_ELOCKED + 10000)] = "drive set is in use by another open map",
    [-(BM_EFAILED + 10000)] = "map is read-only after an earlier I/O error",
    [-(BM_ENOSPACE + 10000)] = "bucket cannot grow further: file size limit reached",
    [-(BM_ENORESTART + 10000)] = "restart file is missing but the drives hold map files (see README: Restart)",
    [-(BM_EMISSING + 10000)] = "a file the last checkpoint names is missing (drive not mounted?)",
};

BM_API const char *bm_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err <= -10001 && -(err + 10000) < (int)(sizeof(messages) / sizeof(messages[0])) && messages[-(err + 10000)])
        return messages[-(err + 10000)];
    if (err < 0 && err > -4096)
        return strerror(-err); /* glibc: thread-safe for valid codes, static strings */
    return "unknown error";
}
