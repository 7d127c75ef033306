/* The same work as benches/totp_verify.rs through liboath (oath-toolkit), the C library under
 * oathtool and pam_oath: oath_totp_validate with a +-1 window and a wrong code.
 * Prints the median ns per verification over several timed batches. */
#include <liboath/oath.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(void) {
  const char secret[] = "12345678901234567890";
  enum { BATCHES = 15, ITERS = 200000 };
  double per[BATCHES];
  volatile int sink = 0;
  if (oath_init() != OATH_OK) return 1;
  for (int b = 0; b < BATCHES; b++) {
    double t0 = now_ns();
    for (int i = 0; i < ITERS; i++)
      sink += oath_totp_validate(secret, 20, 1700000000, 30, 0, 1, "000000");
    per[b] = (now_ns() - t0) / ITERS;
  }
  qsort(per, BATCHES, sizeof per[0], cmp);
  printf("%.1f\n", per[BATCHES / 2]);
  oath_done();
  return sink == 12345 ? 2 : 0;
}
