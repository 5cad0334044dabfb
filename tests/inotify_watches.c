/* Holds one inotify descriptor with a watch on each of N files (made in DIR), then sleeps:
 * a process whose fdinfo lists N watches, each printed with its file handle only if the
 * kernel takes the watched file system's superblock lock at that moment.
 *   inotify_watches DIR N */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s DIR N\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[2]);
	char path[4096];
	mkdir(argv[1], 0755);
	int fd = inotify_init1(0);
	if (fd < 0) {
		perror("inotify_init1");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%d", argv[1], i);
		int f = open(path, O_CREAT | O_WRONLY, 0644);
		if (f < 0) {
			perror(path);
			return 1;
		}
		close(f);
		if (inotify_add_watch(fd, path, IN_MODIFY) < 0) {
			perror("inotify_add_watch");
			return 1;
		}
	}
	printf("watching %d\n", n);
	fflush(stdout);
	for (;;)
		pause();
}
