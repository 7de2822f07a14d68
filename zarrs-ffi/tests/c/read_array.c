/*
 * read_array: a plain C client of the zarrs-ffi C ABI, built against the committed header.
 *
 * Usage: read_array ARRAY_DIR DIM0 [DIM1 ...]
 *
 * Opens the Zarr array stored at the root of the directory ARRAY_DIR, checks that it is a
 * uint16 array of the given shape, reads it whole with zarrs_array_retrieve_subset and checks
 * that element i (in C order) equals i % 65521. It also checks one error path of the ABI.
 * On success it prints one line starting with "read_array: OK" and exits 0; on any failure
 * it prints the reason to stderr and exits 1 (2 for bad usage).
 *
 * Build (the library location is a build parameter; -rpath makes it a runtime one too):
 *
 *   gcc -std=c11 -Wall -Wextra -Werror -Wpedantic -I zarrs-ffi/include \
 *       zarrs-ffi/tests/c/read_array.c -o read_array \
 *       -L LIBDIR -l:LIBFILE -Wl,-rpath,LIBDIR
 *
 * where LIBDIR/LIBFILE is the cdylib, e.g. zarrs-ffi/target/release/libzarrs_ffi.so or the copy
 * packaged in zarrs_cffi/. tests/interop/test_c_program.py builds and runs it.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zarrs_ffi.h"

#define MODULUS 65521u
#define MAX_NDIM 32

/* Report a failed call with the library's message and exit. */
static void fail_call(const char *what, ZarrsResult code) {
    fprintf(stderr, "read_array: %s failed with code %d: %s\n", what, (int)code, zarrs_last_error());
    exit(1);
}

static void fail(const char *message) {
    fprintf(stderr, "read_array: %s\n", message);
    exit(1);
}

#define CHECK(call)                          \
    do {                                     \
        ZarrsResult code_ = (call);          \
        if (code_ != ZARRS_SUCCESS) {        \
            fail_call(#call, code_);         \
        }                                    \
    } while (0)

static int parse_dim(const char *text, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value == 0) {
        return 0;
    }
    *out = (uint64_t)value;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc - 2 > MAX_NDIM) {
        fprintf(stderr, "usage: %s ARRAY_DIR DIM0 [DIM1 ...]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    size_t ndim = (size_t)(argc - 2);
    uint64_t expected_shape[MAX_NDIM];
    uint64_t num_elements = 1;
    for (size_t d = 0; d < ndim; d++) {
        if (!parse_dim(argv[2 + d], &expected_shape[d])) {
            fprintf(stderr, "read_array: bad dimension '%s'\n", argv[2 + d]);
            return 2;
        }
        if (expected_shape[d] > SIZE_MAX / sizeof(uint16_t) / num_elements) {
            fail("the expected shape is too large for memory");
        }
        num_elements *= expected_shape[d];
    }

    const char *version = zarrs_ffi_version();
    if (version == NULL || version[0] == '\0') {
        fail("zarrs_ffi_version returned no version");
    }

    /* Open the directory and the array at its root. Strings are passed with lengths. */
    ZarrsStorage *storage = NULL;
    CHECK(zarrs_storage_open_filesystem(dir, strlen(dir), false, true, &storage));
    ZarrsArray *array = NULL;
    CHECK(zarrs_array_open(storage, "/", 1, &array));

    /* Describe it. */
    size_t array_ndim = 0;
    CHECK(zarrs_array_dimensionality(array, &array_ndim));
    if (array_ndim != ndim) {
        fprintf(stderr, "read_array: the array has %zu dimensions, expected %zu\n", array_ndim, ndim);
        return 1;
    }
    uint64_t shape[MAX_NDIM];
    CHECK(zarrs_array_shape(array, shape, ndim));
    for (size_t d = 0; d < ndim; d++) {
        if (shape[d] != expected_shape[d]) {
            fprintf(stderr, "read_array: dimension %zu has extent %" PRIu64 ", expected %" PRIu64 "\n", d, shape[d],
                    expected_shape[d]);
            return 1;
        }
    }
    size_t element_size = 0;
    CHECK(zarrs_array_element_size(array, &element_size));
    /* The data type name, sized with the buf_len == 0 probe. */
    size_t name_len = 0;
    ZarrsResult probe = zarrs_array_data_type(array, NULL, 0, &name_len);
    if (probe != ZARRS_ERROR_BUFFER_SIZE || name_len == 0) {
        fail_call("zarrs_array_data_type size probe", probe);
    }
    char *name = calloc(name_len + 1, 1);
    if (name == NULL) {
        fail("out of memory");
    }
    CHECK(zarrs_array_data_type(array, name, name_len, &name_len));
    if (element_size != sizeof(uint16_t) || strcmp(name, "uint16") != 0) {
        fprintf(stderr, "read_array: data type %s (%zu bytes), expected uint16\n", name, element_size);
        return 1;
    }
    free(name);

    /* Read everything with explicit options. */
    ZarrsOptions options;
    CHECK(zarrs_options_default(&options));
    options.num_threads = 2;
    uint64_t start[MAX_NDIM] = {0};
    size_t out_len = (size_t)num_elements * sizeof(uint16_t);
    uint16_t *values = malloc(out_len);
    if (values == NULL) {
        fail("out of memory");
    }
    CHECK(zarrs_array_retrieve_subset(array, &options, start, shape, ndim, (uint8_t *)values, out_len));
    if (zarrs_last_error()[0] != '\0') {
        fail("the last error is not empty after a successful call");
    }
    for (uint64_t i = 0; i < num_elements; i++) {
        uint16_t expected = (uint16_t)(i % MODULUS);
        if (values[i] != expected) {
            fprintf(stderr, "read_array: element %" PRIu64 " is %u, expected %u\n", i, (unsigned)values[i],
                    (unsigned)expected);
            return 1;
        }
    }

    /* Error paths: a NULL out-parameter, then a buffer one element short. Neither may write. */
    ZarrsResult code = zarrs_array_dimensionality(array, NULL);
    if (code != ZARRS_ERROR_NULL_POINTER) {
        fail_call("zarrs_array_dimensionality(array, NULL) did not fail with ZARRS_ERROR_NULL_POINTER", code);
    }
    const char *message = zarrs_last_error();
    if (message == NULL || strstr(message, "NULL") == NULL) {
        fail("no useful last error after a NULL out-parameter");
    }
    values[0] = 0xBEEF;
    code = zarrs_array_retrieve_subset(array, NULL, start, shape, ndim, (uint8_t *)values, out_len - 2);
    if (code != ZARRS_ERROR_BUFFER_SIZE || zarrs_last_error()[0] == '\0' || values[0] != 0xBEEF) {
        fail_call("a short out buffer did not fail cleanly with ZARRS_ERROR_BUFFER_SIZE", code);
    }
    free(values);

    /* The storage may be freed before the arrays opened on it; NULL frees are no-ops. */
    CHECK(zarrs_storage_free(storage));
    CHECK(zarrs_array_free(array));
    CHECK(zarrs_array_free(NULL));

    printf("read_array: OK: %" PRIu64 " uint16 elements of shape [", num_elements);
    for (size_t d = 0; d < ndim; d++) {
        printf("%s%" PRIu64, d == 0 ? "" : ", ", shape[d]);
    }
    printf("] equal i %% %u (zarrs-ffi %s)\n", MODULUS, version);
    return 0;
}
