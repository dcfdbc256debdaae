/*
 * conductor.h — runs bm-stress as the options say (every sweep point, the crash cycles), reports, and
 * returns the exit status: 1 if any check failed (this wins over everything else: a wrong value is the
 * news), else 2 on a usage or library error, else 0.
 */
#ifndef BM_STRESS_CONDUCTOR_H
#define BM_STRESS_CONDUCTOR_H

#include "options.h"

int conduct(const struct options *o);

#endif
