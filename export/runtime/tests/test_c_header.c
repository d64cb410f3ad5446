/* The C API from C: the header compiles as C, its enums are 32 bits wide, and a C caller's out-of-range enum
 * values (which C allows) come back as invalid arguments. */
#include <stdio.h>
#include <string.h>

#include "strsr/strsr_runtime.h"

static int failures = 0;

static void expect(int ok, const char* what) {
    if (!ok) {
        fprintf(stderr, "FAILED %s (last error: '%s')\n", what, strsr_last_error());
        ++failures;
    }
}

int main(void) {
    unsigned char pixel[3] = {0, 0, 0}, out[48];
    strsr_options options;
    strsr_session* session = NULL;
    expect(sizeof(strsr_pixel_format) == 4 && sizeof(strsr_status) == 4 && sizeof(strsr_device) == 4,
           "enums are 32 bits wide");
    expect(strsr_upscale(NULL, (strsr_pixel_format)-5, pixel, 3, 1, 1, out, 48) == STRSR_ERROR_INVALID_ARGUMENT &&
               strstr(strsr_last_error(), "unknown pixel format -5") != NULL,
           "format -5 is an invalid argument");
    strsr_options_init(&options);
    options.device = (strsr_device)77;
    expect(strsr_session_create("/nonexistent/strsr", &options, &session) == STRSR_ERROR_INVALID_ARGUMENT &&
               strstr(strsr_last_error(), "unknown device 77") != NULL && session == NULL,
           "device 77 is an invalid argument");
    expect(strcmp(strsr_status_name((strsr_status)-1), "unknown status") == 0, "status -1 has no name");
    printf("%s test_c_header\n", failures ? "FAIL" : "ok  ");
    return failures ? 1 : 0;
}
