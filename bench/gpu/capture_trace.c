/* LD_PRELOAD tracer: logs which thread begins/ends stream capture, synchronizes the context, or changes
 * its capture mode, with a backtrace for capture begins (and for any failing call). Hooks dlsym so that the
 * driver entry points that cudart (shared or statically linked into cuDNN/cuBLAS) gets through
 * cuGetProcAddress are wrapped. Times are CLOCK_MONOTONIC, as Python's time.monotonic().
 *
 *   gcc -O1 -shared -fPIC -o /tmp/capture_trace.so bench/gpu/capture_trace.c -ldl -lpthread
 *   CAPTURE_TRACE=/tmp/cu.log PY_TRACE=/tmp/py.log LD_PRELOAD=/tmp/capture_trace.so \
 *       python3 bench/gpu/start_trace.py fp16 2
 *
 * Issue 27's question: which thread captures while another creates a session (start_trace.py logs the
 * Python side: session creation and first runs, with the same thread ids). Run once on an H100 with
 * onnxruntime-gpu 1.31.1 (2026-12-07): it logged no call at all through dlsym + cuGetProcAddress. So it also
 * interposes the CUDA runtime's and the driver's capture calls by name (a library calling libcudart or
 * libcuda through its PLT reaches these first), the real ones looked up in the already loaded libraries, and
 * says at load that it is loaded and which lookups it saw. Second H100 run, same day: loaded, six lookups of
 * cuGetProcAddress_v2, and still no capture call nor cuCtxSynchronize through any hook: not yet an answer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef uintptr_t (*fn6)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t);
static void *(*real_dlsym)(void *, const char *);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#define SLOTS 64
static fn6 real_fn[SLOTS];
static const char *slot_name[SLOTS];
static int nslots;
static FILE *out;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void logf_(const char *name, uintptr_t a, uintptr_t b, uintptr_t r, int trace) {
  if (!out) { const char *p = getenv("CAPTURE_TRACE"); out = fopen(p ? p : "/tmp/capture_trace.log", "a"); if (!out) return; }
  pthread_mutex_lock(&lock);
  fprintf(out, "%.6f tid=%ld %s a=%#lx b=%#lx -> %lu\n", now(), (long)syscall(SYS_gettid), name, a, b, r);
  if (trace) {
    void *frames[24]; int n = backtrace(frames, 24);
    for (int i = 1; i < n; i++) { Dl_info info; if (dladdr(frames[i], &info) && info.dli_fname) {
        const char *base = strrchr(info.dli_fname, '/'); fprintf(out, "    %s+%#lx %s\n", base ? base + 1 : info.dli_fname,
          (unsigned long)((char *)frames[i] - (char *)info.dli_fbase), info.dli_sname ? info.dli_sname : ""); } }
  }
  fflush(out);
  pthread_mutex_unlock(&lock);
}
static int traced(const char *s) {
  return strstr(s, "cuStreamBeginCapture") || strstr(s, "cuStreamEndCapture") || !strcmp(s, "cuCtxSynchronize")
      || strstr(s, "cuThreadExchangeStreamCaptureMode") || strstr(s, "cuGraphLaunch") || strstr(s, "cuGraphInstantiate");
}
#define W(i) static uintptr_t w##i(uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d, uintptr_t e, uintptr_t f) { \
  int begin = strstr(slot_name[i], "BeginCapture") != NULL; \
  uintptr_t r = real_fn[i](a, b, c, d, e, f); logf_(slot_name[i], a, b, r, begin || r != 0); return r; }
W(0) W(1) W(2) W(3) W(4) W(5) W(6) W(7) W(8) W(9) W(10) W(11) W(12) W(13) W(14) W(15) W(16) W(17) W(18) W(19)
W(20) W(21) W(22) W(23) W(24) W(25) W(26) W(27) W(28) W(29) W(30) W(31) W(32) W(33) W(34) W(35) W(36) W(37) W(38) W(39)
W(40) W(41) W(42) W(43) W(44) W(45) W(46) W(47) W(48) W(49) W(50) W(51) W(52) W(53) W(54) W(55) W(56) W(57) W(58) W(59)
W(60) W(61) W(62) W(63)
static fn6 wrappers[SLOTS] = {w0,w1,w2,w3,w4,w5,w6,w7,w8,w9,w10,w11,w12,w13,w14,w15,w16,w17,w18,w19,w20,w21,w22,w23,
  w24,w25,w26,w27,w28,w29,w30,w31,w32,w33,w34,w35,w36,w37,w38,w39,w40,w41,w42,w43,w44,w45,w46,w47,w48,w49,w50,w51,
  w52,w53,w54,w55,w56,w57,w58,w59,w60,w61,w62,w63};
static void *wrap(const char *name, void *real) {
  if (!real || !traced(name)) return real;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nslots; i++) if ((void *)real_fn[i] == real) { pthread_mutex_unlock(&lock); return (void *)wrappers[i]; }
  if (nslots == SLOTS) { pthread_mutex_unlock(&lock); return real; }
  int i = nslots++; real_fn[i] = (fn6)real; slot_name[i] = strdup(name);
  pthread_mutex_unlock(&lock);
  return (void *)wrappers[i];
}
typedef int (*gpa_t)(const char *, void **, int, uint64_t, void *);
static gpa_t real_gpa, real_gpa2;
static int my_gpa(const char *s, void **pfn, int v, uint64_t f, void *st) { int r = real_gpa(s, pfn, v, f, st); if (!r && pfn) *pfn = wrap(s, *pfn); return r; }
static int my_gpa2(const char *s, void **pfn, int v, uint64_t f, void *st) { int r = real_gpa2(s, pfn, v, f, st); if (!r && pfn) *pfn = wrap(s, *pfn); return r; }
static void init(void) {
  if (!real_dlsym) { real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34"); if (!real_dlsym) real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5"); }
}
void *dlsym(void *handle, const char *name) {
  init();
  void *p = real_dlsym(handle, name);
  if (!p || !name) return p;
  if (strstr(name, "GetProcAddress")) logf_(name, (uintptr_t)handle, 0, 0, 0);
  if (!strcmp(name, "cuGetProcAddress")) { real_gpa = (gpa_t)p; return (void *)my_gpa; }
  if (!strcmp(name, "cuGetProcAddress_v2")) { real_gpa2 = (gpa_t)p; return (void *)my_gpa2; }
  return wrap(name, p);
}

/* Interposed by name: the real function from the library already loaded (RTLD_NOLOAD; RTLD_NEXT does not see
 * libraries dlopen'ed with RTLD_LOCAL, as onnxruntime's providers are). */
static void *real_named(const char *const *libs, const char *name) {
  init();
  for (int i = 0; libs[i]; i++) { void *h = dlopen(libs[i], RTLD_NOW | RTLD_NOLOAD); if (h) { void *p = real_dlsym(h, name); if (p) return p; } }
  return real_dlsym(RTLD_NEXT, name);
}
static const char *const CUDART[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so", NULL};
static const char *const CUDA[] = {"libcuda.so.1", "libcuda.so", NULL};
#define I1(lib, name) uintptr_t name(uintptr_t a) { static fn6 real; if (!real) real = (fn6)real_named(lib, #name); \
  uintptr_t r = real(a, 0, 0, 0, 0, 0); logf_("direct " #name, a, 0, r, strstr(#name, "Begin") != NULL || r != 0); return r; }
#define I2(lib, name) uintptr_t name(uintptr_t a, uintptr_t b) { static fn6 real; if (!real) real = (fn6)real_named(lib, #name); \
  uintptr_t r = real(a, b, 0, 0, 0, 0); logf_("direct " #name, a, b, r, strstr(#name, "Begin") != NULL || r != 0); return r; }
#define I6(lib, name) uintptr_t name(uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d, uintptr_t e, uintptr_t f) { \
  static fn6 real; if (!real) real = (fn6)real_named(lib, #name); \
  uintptr_t r = real(a, b, c, d, e, f); logf_("direct " #name, a, b, r, 1); return r; }
I2(CUDART, cudaStreamBeginCapture)
I6(CUDART, cudaStreamBeginCaptureToGraph)
I2(CUDART, cudaStreamEndCapture)
I1(CUDART, cudaThreadExchangeStreamCaptureMode)
I2(CUDART, cudaGraphLaunch)
I2(CUDA, cuStreamBeginCapture_v2)
I2(CUDA, cuStreamBeginCapture_ptsz)
I1(CUDA, cuStreamBeginCapture)
I2(CUDA, cuStreamEndCapture)
I1(CUDA, cuThreadExchangeStreamCaptureMode)

__attribute__((constructor)) static void loaded(void) { logf_("tracer loaded", (uintptr_t)getpid(), 0, 0, 0); }
