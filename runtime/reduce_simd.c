/* reduce_simd.c — placeholder being written; fills nothing yet. */
#include "simd.h"
void ISA(rt_simd_fill_reduce)(rt_simd *t) { (void)t; }
