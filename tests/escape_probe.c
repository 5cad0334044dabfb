/* Attempts a container's root makes at the host, one per call: `probe NAME`. Exit 0 means the
 * attempt SUCCEEDED (an escape); 1 means it was refused (the errno is printed); 2 means the
 * probe itself could not run. Built statically by tests/escapes.rs and copied into containers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int refused(const char *what, long r) {
    if (r >= 0) {
        printf("%s: succeeded\n", what);
        return 0;
    }
    printf("%s: refused: %s (errno %d)\n", what, strerror(errno), errno);
    return 1;
}

/* RTM_GETLINK of the namespace with id 0 (from inside a container, its link's peer: the host),
 * through IFLA_TARGET_NETNSID. */
static int netnsid(void) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) return refused("netlink socket", -1) ? 2 : 2;
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
        struct rtattr a;
        int nsid;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_GETLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.i.ifi_family = AF_UNSPEC;
    req.a.rta_type = IFLA_TARGET_NETNSID;
    req.a.rta_len = RTA_LENGTH(sizeof(int));
    req.nsid = 0;
    if (send(s, &req, sizeof req, 0) < 0) return refused("send", -1) ? 2 : 2;
    char buf[65536];
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < 0) return refused("recv", -1) ? 2 : 2;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        errno = -e->error;
        return refused("RTM_GETLINK in netnsid 0", -1);
    }
    if (h->nlmsg_type == RTM_NEWLINK) return refused("RTM_GETLINK in netnsid 0", 0);
    if (h->nlmsg_type == NLMSG_DONE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
        /* a dump reports its error in NLMSG_DONE's payload */
        int err = *(int *)NLMSG_DATA(h);
        if (err < 0) {
            errno = -err;
            return refused("RTM_GETLINK in netnsid 0", -1);
        }
        printf("netnsid: no namespace with id 0 here\n");
        return 2;
    }
    printf("netnsid: unexpected reply %d\n", h->nlmsg_type);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *t = argv[1];
    if (!strcmp(t, "keyctl"))
        return refused(t, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
    if (!strcmp(t, "add_key"))
        return refused(t, syscall(SYS_add_key, "user", "ferry-escape", "x", 1, KEY_SPEC_SESSION_KEYRING));
    if (!strcmp(t, "kexec_load")) return refused(t, syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(t, "finit_module")) {
        int fd = open("/dev/null", O_RDONLY);
        return refused(t, syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(t, "open_by_handle_at")) {
        struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
        fh->handle_bytes = MAX_HANDLE_SZ;
        int mnt;
        if (name_to_handle_at(AT_FDCWD, "/", fh, &mnt, 0) < 0) return refused("name_to_handle_at", -1) ? 2 : 2;
        return refused(t, open_by_handle_at(AT_FDCWD, fh, O_RDONLY));
    }
    if (!strcmp(t, "bpf")) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.map_type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 4;
        a.max_entries = 1;
        return refused(t, syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a));
    }
    if (!strcmp(t, "perf_event_open")) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_CPU_CLOCK;
        /* every process on CPU 0: the whole host */
        return refused(t, syscall(SYS_perf_event_open, &a, -1, 0, -1, 0));
    }
    if (!strcmp(t, "userfaultfd")) return refused(t, syscall(SYS_userfaultfd, O_CLOEXEC));
    if (!strcmp(t, "uevent")) return refused(t, socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT));
    if (!strcmp(t, "io_uring")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        return refused(t, syscall(SYS_io_uring_setup, 1, &p));
    }
    if (!strcmp(t, "unshare_user")) return refused(t, unshare(CLONE_NEWUSER));
    if (!strcmp(t, "netnsid")) return netnsid();
    if (!strcmp(t, "alloc") && argc == 3) {
        /* alloc MIB: takes and touches that much memory, a MiB at a time */
        long mib = atol(argv[2]);
        for (long i = 0; i < mib; i++) {
            char *p = malloc(1 << 20);
            if (!p) return refused("malloc", -1);
            memset(p, 1, 1 << 20);
        }
        printf("alloc: %ld MiB taken\n", mib);
        return 0;
    }
    if (!strcmp(t, "raise") && argc == 5) {
        /* raise CONTROLLER FILE VALUE: the cgroup self-raise. A user namespace of its own with
         * its current uid mapped to root (for a privileged container: the host's uid 0), a
         * cgroup namespace owned by it, the v1 hierarchy mounted, the limit written. */
        char map[64];
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0) return refused("unshare", -1);
        int fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd >= 0) { write(fd, "deny", 4); close(fd); }
        snprintf(map, sizeof map, "0 %u 1", uid);
        fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) return refused("uid_map", -1);
        close(fd);
        snprintf(map, sizeof map, "0 %u 1", gid);
        fd = open("/proc/self/gid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) return refused("gid_map", -1);
        close(fd);
        mkdir("/tmp/cg", 0700);
        if (mount("none", "/tmp/cg", "cgroup", 0, argv[2]) < 0) return refused("mount cgroup", -1);
        char path[256];
        snprintf(path, sizeof path, "/tmp/cg/%s", argv[3]);
        fd = open(path, O_WRONLY);
        if (fd < 0) return refused("open", -1);
        return refused("raise", write(fd, argv[4], strlen(argv[4])));
    }
    if (!strcmp(t, "udp") && argc == 5) {
        /* udp SRC DST PORT: one datagram from any source address (IP_FREEBIND: the address
         * need not be the container's); success means it left the container's socket. */
        int v6 = strchr(argv[2], ':') != NULL;
        int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0), one = 1;
        if (s < 0) return refused("socket", -1) ? 2 : 2;
        setsockopt(s, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, &one, sizeof one);
        struct sockaddr_storage src, dst;
        memset(&src, 0, sizeof src);
        memset(&dst, 0, sizeof dst);
        socklen_t len;
        if (v6) {
            struct sockaddr_in6 *a = (void *)&src, *b = (void *)&dst;
            a->sin6_family = b->sin6_family = AF_INET6;
            inet_pton(AF_INET6, argv[2], &a->sin6_addr);
            inet_pton(AF_INET6, argv[3], &b->sin6_addr);
            b->sin6_port = htons(atoi(argv[4]));
            len = sizeof *a;
        } else {
            struct sockaddr_in *a = (void *)&src, *b = (void *)&dst;
            a->sin_family = b->sin_family = AF_INET;
            inet_pton(AF_INET, argv[2], &a->sin_addr);
            inet_pton(AF_INET, argv[3], &b->sin_addr);
            b->sin_port = htons(atoi(argv[4]));
            len = sizeof *a;
        }
        if (bind(s, (void *)&src, len) < 0) return refused("bind", -1) ? 2 : 2;
        char msg[128];
        snprintf(msg, sizeof msg, "from %s", argv[2]);
        return refused("udp", sendto(s, msg, strlen(msg), 0, (void *)&dst, len));
    }
    printf("unknown probe %s\n", t);
    return 2;
}
