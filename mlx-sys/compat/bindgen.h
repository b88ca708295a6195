// What bindgen parses: mlx-c's umbrella header, with the half-precision
// typedefs it leaves out off aarch64 (see mlx_c_compat.h).
#include <stdint.h>
#if !defined(__aarch64__)
typedef uint16_t float16_t;
typedef uint16_t bfloat16_t;
#define HAS_FLOAT16
#define HAS_BFLOAT16
#endif
#include "mlx/c/mlx.h"
