/*
 * main.c — bm-stress: parses the command line and hands over to the conductor (conductor.c).
 *
 * Exit status: 1 if any check failed (this wins over everything else: a wrong value is the news), else 2 on
 * a usage or library error, else 0.
 */
#include "conductor.h"
#include "options.h"

int main(int argc, char **argv)
{
    struct options o;
    int prc = options_parse(argc, argv, &o);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    return conduct(&o);
}
