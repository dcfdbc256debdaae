/*
 * bm_api.h — marks the functions of include/bucketmap.h that libbucketmap.so exports.
 *
 * The library is compiled with -fvisibility=hidden so that its internals cannot collide with a host's
 * symbols; every public definition, in whatever file it lives, must therefore carry BM_API or a
 * shared-library user gets "undefined reference" for it. One private header keeps that one rule in one place.
 */
#ifndef BM_API_H
#define BM_API_H

#define BM_API __attribute__((visibility("default")))

#endif
