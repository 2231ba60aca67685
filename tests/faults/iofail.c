/*
 * iofail.c - LD_PRELOAD shim that makes storage I/O fail on cue.
 *
 * What it is
 * ----------
 * Integration tests build this with
 *
 *     cc -shared -fPIC -O2 -o libiofail.so tests/faults/iofail.c -ldl
 *
 * and start the real service binary with LD_PRELOAD=/path/to/libiofail.so.
 * The shim interposes the libc entry points that sled 0.34.7 and Rust's std
 * use to write and persist files, and makes them fail with an errno while a
 * trigger file exists.  Everything else passes straight through to the real
 * libc function (found once with dlsym(RTLD_NEXT, ...)).
 *
 * Environment (read once, when the shim is loaded)
 * ------------------------------------------------
 *   VERITRAIL_FAULT_DIR      absolute directory.  Only file descriptors whose
 *                            path (readlink of /proc/self/fd/N) is this
 *                            directory or lies under it are affected.  The
 *                            directory is also compared after realpath(), so
 *                            a symlinked path still matches.
 *   VERITRAIL_FAULT_TRIGGER  path of the cue file.  Faults are injected only
 *                            while this file exists (stat() on each call that
 *                            could fail; the check is skipped for calls the
 *                            mode never fails, e.g. write() in "sync" mode).
 *   VERITRAIL_FAULT_MODE     what to break (default "sync"):
 *     sync       fsync, fdatasync, sync_file_range, syncfs fail with EIO.
 *     sync-once  the first in-scope sync call after the cue appears fails
 *                with EIO, later sync calls succeed.  This models Linux
 *                "fsyncgate": after a failed fsync the kernel may drop the
 *                dirty pages and mark them clean, so a retried fsync reports
 *                success although the data was lost.  The shim only models
 *                the *reporting*: it does not discard anything, the retried
 *                sync really persists the data.  A test must therefore treat
 *                anything written before the failed sync as possibly lost and
 *                judge the service by its reaction (it must not acknowledge
 *                the write as durable after the failure), not by what is on
 *                disk afterwards.  The shim re-arms when the trigger is
 *                removed and created again (a sync call seeing no trigger, or
 *                a trigger with a different inode/ctime, re-arms it).
 *     write      pwrite, pwrite64, pwritev, pwritev64, pwritev2, pwritev64v2,
 *                write, writev fail with EIO before writing anything, and the
 *                sync calls fail with EIO too.
 *     nospace    like "write", but errno is ENOSPC.
 *   VERITRAIL_FAULT_LOG      optional file; every injected failure appends one
 *                            line "<call> fd=<n> path=<path> errno=<EIO|ENOSPC>".
 *
 * If VERITRAIL_FAULT_DIR or VERITRAIL_FAULT_TRIGGER is unset or empty, or
 * the directory is not absolute, the shim does nothing.  An unknown mode
 * prints one warning on stderr and also disables the shim.
 *
 * Coverage: the service binary imports fsync, fdatasync, sync_file_range,
 * pwrite64, write and writev (nm -D target/debug/veritrail); sled 0.34.7
 * (without its io_uring feature) persists with pwrite (FileExt::write_all_at
 * -> pwrite64), sync_file_range, and File::sync_all (fsync); Rust's
 * File::sync_data is fdatasync.  No msync: neither sled nor the binary uses
 * it.  copy_file_range, sendfile, fallocate, stdio (FILE*) and io_uring are
 * not intercepted; calls made inside libc itself never reach the shim.
 */
#define _GNU_SOURCE
#define _LARGEFILE64_SOURCE
/* pwrite and pwrite64 must stay distinct symbols; never remap to *64. */
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the real functions ------------------------------------------------ */

static struct {
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*sync_file_range)(int, off64_t, off64_t, unsigned int);
    int (*syncfs)(int);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev64)(int, const struct iovec *, int, off64_t);
    ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
    ssize_t (*pwritev64v2)(int, const struct iovec *, int, off64_t, int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
} real;

/* ---- configuration (written once under pthread_once, then read-only) --- */

enum mode { MODE_OFF, MODE_SYNC, MODE_SYNC_ONCE, MODE_WRITE, MODE_NOSPACE };

static enum mode mode = MODE_OFF;
static char dir_raw[PATH_MAX];   /* VERITRAIL_FAULT_DIR, trailing '/' cut */
static char dir_canon[PATH_MAX]; /* realpath() of it, "" if that failed */
static char trigger[PATH_MAX];
static char logpath[PATH_MAX];   /* "" = no log */

/* sync-once state: identity of the trigger file that already caused a
 * failure.  Guarded by once_lock. */
static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static int once_fired;
static dev_t once_dev;
static ino_t once_ino;
static struct timespec once_ctim;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#define RESOLVE(name) (*(void **)&real.name = dlsym(RTLD_NEXT, #name))

/* Copy an environment variable into buf; 0 if unset, empty or too long. */
static int copy_env(const char *name, char *buf, size_t size)
{
    const char *v = getenv(name);
    size_t n;

    if (v == NULL || (n = strlen(v)) == 0 || n >= size)
        return 0;
    memcpy(buf, v, n + 1);
    return 1;
}

static void do_init(void)
{
    const char *m;
    size_t n;

    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(sync_file_range);
    RESOLVE(syncfs);
    RESOLVE(pwrite);
    RESOLVE(pwrite64);
    RESOLVE(pwritev);
    RESOLVE(pwritev64);
    RESOLVE(pwritev2);
    RESOLVE(pwritev64v2);
    RESOLVE(write);
    RESOLVE(writev);

    if (!copy_env("VERITRAIL_FAULT_DIR", dir_raw, sizeof dir_raw) ||
        !copy_env("VERITRAIL_FAULT_TRIGGER", trigger, sizeof trigger) ||
        dir_raw[0] != '/')
        return; /* not configured: pass everything through */
    copy_env("VERITRAIL_FAULT_LOG", logpath, sizeof logpath);

    n = strlen(dir_raw);
    while (n > 1 && dir_raw[n - 1] == '/')
        dir_raw[--n] = '\0';
    if (realpath(dir_raw, dir_canon) == NULL)
        dir_canon[0] = '\0'; /* may not exist yet; retried per call */

    m = getenv("VERITRAIL_FAULT_MODE");
    if (m == NULL || *m == '\0' || strcmp(m, "sync") == 0)
        mode = MODE_SYNC;
    else if (strcmp(m, "sync-once") == 0)
        mode = MODE_SYNC_ONCE;
    else if (strcmp(m, "write") == 0)
        mode = MODE_WRITE;
    else if (strcmp(m, "nospace") == 0)
        mode = MODE_NOSPACE;
    else if (real.write != NULL) {
        static const char msg[] =
            "iofail: unknown VERITRAIL_FAULT_MODE, shim disabled\n";
        (void)!real.write(2, msg, sizeof msg - 1);
    }
}

static void init(void)
{
    pthread_once(&init_once, do_init);
}

/* Resolve early, while the process is still single-threaded. */
__attribute__((constructor)) static void iofail_ctor(void)
{
    init();
}

/* ---- the decision ------------------------------------------------------ */

/* Is path the directory dir (length n) or something below it? */
static int under(const char *path, const char *dir, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1 && dir[0] == '/')
        return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Fill path with fd's path; 1 if it is in scope. */
static int in_scope(int fd, char *path, size_t size)
{
    char link[64];
    char canon[PATH_MAX];
    ssize_t len;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    len = readlink(link, path, size - 1);
    if (len < 0)
        return 0; /* bad fd: let the real call report it */
    path[len] = '\0';

    if (under(path, dir_raw, strlen(dir_raw)))
        return 1;
    if (dir_canon[0] != '\0')
        return under(path, dir_canon, strlen(dir_canon));
    /* The directory did not exist at load time; canonicalise it now. */
    return realpath(dir_raw, canon) != NULL &&
           under(path, canon, strlen(canon));
}

/* Append one line to the log with the real open/write (no recursion). */
static void log_failure(const char *call, int fd, const char *path, int err)
{
    char line[PATH_MAX + 128];
    int n, lfd;

    if (logpath[0] == '\0' || real.write == NULL)
        return;
    n = snprintf(line, sizeof line, "%s fd=%d path=%s errno=%s\n", call, fd,
                 path, err == ENOSPC ? "ENOSPC" : "EIO");
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    lfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (lfd < 0)
        return;
    (void)!real.write(lfd, line, (size_t)n); /* O_APPEND: one atomic line */
    close(lfd);
}

/* sync-once: 1 if this trigger file has not caused a failure yet (and
 * record that it now has).  present=0 means the trigger is gone: re-arm. */
static int once_take(int present, const struct stat *st)
{
    int take = 0;

    pthread_mutex_lock(&once_lock);
    if (!present) {
        once_fired = 0;
    } else if (!once_fired || once_dev != st->st_dev ||
               once_ino != st->st_ino ||
               once_ctim.tv_sec != st->st_ctim.tv_sec ||
               once_ctim.tv_nsec != st->st_ctim.tv_nsec) {
        once_fired = 1;
        once_dev = st->st_dev;
        once_ino = st->st_ino;
        once_ctim = st->st_ctim;
        take = 1;
    }
    pthread_mutex_unlock(&once_lock);
    return take;
}

/*
 * Should this call fail?  Returns the errno to fail with, or 0 to pass
 * through.  errno is left as the caller had it when passing through.
 */
static int should_fail(const char *call, int fd, int is_sync)
{
    char path[PATH_MAX];
    struct stat st;
    int saved = errno, err = 0, present;

    init();
    if (mode == MODE_OFF)
        return 0;
    if (!is_sync && mode != MODE_WRITE && mode != MODE_NOSPACE)
        return 0; /* writes only fail in write/nospace modes */

    present = stat(trigger, &st) == 0;
    if (mode == MODE_SYNC_ONCE && !present)
        once_take(0, NULL);
    if (present && in_scope(fd, path, sizeof path)) {
        if (mode == MODE_NOSPACE)
            err = ENOSPC;
        else if (mode != MODE_SYNC_ONCE || once_take(1, &st))
            err = EIO;
        if (err)
            log_failure(call, fd, path, err);
    }
    errno = saved;
    return err;
}

/* ---- the interposed functions ------------------------------------------ */

/* Fail with err, or with ENOSYS if the real function does not exist. */
#define INTERCEPT(name, fd, is_sync)                      \
    do {                                                  \
        int err_ = should_fail(#name, (fd), (is_sync));   \
        if (err_ == 0 && real.name == NULL)               \
            err_ = ENOSYS;                                \
        if (err_ != 0) {                                  \
            errno = err_;                                 \
            return -1;                                    \
        }                                                 \
    } while (0)

int fsync(int fd)
{
    INTERCEPT(fsync, fd, 1);
    return real.fsync(fd);
}

int fdatasync(int fd)
{
    INTERCEPT(fdatasync, fd, 1);
    return real.fdatasync(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
    INTERCEPT(sync_file_range, fd, 1);
    return real.sync_file_range(fd, offset, nbytes, flags);
}

int syncfs(int fd)
{
    INTERCEPT(syncfs, fd, 1);
    return real.syncfs(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    INTERCEPT(pwrite, fd, 0);
    return real.pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
    INTERCEPT(pwrite64, fd, 0);
    return real.pwrite64(fd, buf, count, offset);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    INTERCEPT(pwritev, fd, 0);
    return real.pwritev(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
    INTERCEPT(pwritev64, fd, 0);
    return real.pwritev64(fd, iov, iovcnt, offset);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset,
                 int flags)
{
    INTERCEPT(pwritev2, fd, 0);
    return real.pwritev2(fd, iov, iovcnt, offset, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt,
                    off64_t offset, int flags)
{
    INTERCEPT(pwritev64v2, fd, 0);
    return real.pwritev64v2(fd, iov, iovcnt, offset, flags);
}

ssize_t write(int fd, const void *buf, size_t count)
{
    INTERCEPT(write, fd, 0);
    return real.write(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    INTERCEPT(writev, fd, 0);
    return real.writev(fd, iov, iovcnt);
}
