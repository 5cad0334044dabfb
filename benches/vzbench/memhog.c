/*
 * A memory workload for ferry's benchmarks, copied into a busybox container: it allocates MiB
 * of incompressible data, then dirties DIRTY percent of its pages per second (one random word
 * per page, spread over 10 ms ticks) until SECONDS have passed.
 *
 *   memhog MiB DIRTY_PERCENT_PER_SECOND SECONDS [READY_FILE]
 *
 * READY_FILE is written (with the number of pages) once all memory is filled.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t state = 88172645463325252ULL;

static uint64_t next(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: memhog MiB DIRTY_PERCENT_PER_SECOND SECONDS [READY_FILE]\n");
		return 2;
	}
	long mib = atol(argv[1]);
	double pct = atof(argv[2]);
	long secs = atol(argv[3]);
	if (mib <= 0 || pct < 0 || pct > 100 || secs <= 0) {
		fprintf(stderr, "memhog: bad arguments\n");
		return 2;
	}
	size_t len = (size_t)mib << 20, pages = len / 4096;
	uint64_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("memhog: mmap");
		return 1;
	}
	state ^= ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
	for (size_t i = 0; i < len / 8; i++)
		m[i] = next();
	if (argc > 4) {
		FILE *f = fopen(argv[4], "w");
		if (f) {
			fprintf(f, "%zu\n", pages);
			fclose(f);
		}
	}
	double per_tick = (double)pages * pct / 100.0 / 100.0, carry = 0;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	time_t end = t.tv_sec + secs;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec >= end)
			break;
		carry += per_tick;
		long n = (long)carry;
		carry -= (double)n;
		for (long k = 0; k < n; k++) {
			size_t p = next() % pages;
			m[p * 512 + next() % 512] = next();
		}
		usleep(10000);
	}
	return 0;
}
