/*
 * overthere native spawn: start a process with posix_spawn and watch for its
 * exit with a pidfd, without a fork of the (large) Node process.
 *
 * Why: libuv forks. A fork copies the page tables of the whole process and
 * then makes every page it touches take a copy-on-write fault, so its cost
 * grows with the agent's memory; glibc's posix_spawn uses clone(CLONE_VM |
 * CLONE_VFORK), which copies nothing and only pauses the calling thread until
 * the child has exec'd. Exits are seen through pidfds (Linux >= 5.3) on one
 * epoll thread per Node environment, so nothing competes with libuv's SIGCHLD
 * handling: libuv only reaps the pids it started.
 *
 * posix_spawn itself runs on a thread of its own: the calling thread waits
 * until the child has exec'd, which on a busy machine can take a millisecond
 * that the event loop should not lose.
 *
 * The child's stdout and stderr are read on the exit watcher's thread too, up
 * to 256 KiB at a time, and handed over as buffers: no libuv handle, socket
 * object or stream pipe per task, and a fast writer's output crosses into
 * JavaScript in a few large chunks rather than many 64 KiB ones. Each stream
 * may run OUTPUT_AHEAD_BYTES ahead of what JavaScript has taken (`ack`); past
 * that its pipe is not read, and the writer blocks, as with any pipe.
 *
 * JavaScript API (see src/native-spawn.ts):
 *   init(onEvent) -> bool   false: this kernel has no pidfd_open (Linux < 5.3)
 *     onEvent(SPAWNED, id, pid, stdinFd (-1 without), stdoutFd, stderrFd, generation)
 *       generation -1: the addon does not read stdout and stderr; JavaScript does
 *     onEvent(FAILED, id, errno)
 *     onEvent(EXITED, pid, code (-1 when signalled), signal (0 when not))
 *       the child's process group was SIGKILLed just before it was reaped
 *     onEvent(OUTPUT, stdoutFd or stderrFd, generation, 0, 0, 0, buffer)
 *     onEvent(OUTPUT_END, fd, generation, errno (0: end of file))
 *   spawn(id, file, argv[], env[], cwd, withStdin, path, table)   queues a spawn
 *   ref() / unref()   keep the event loop alive while spawns or children are pending
 *   openWatchTable() -> [slot, fd, bytes] | null   a shared table of watched groups
 *   watch(slot, id, on)   set or clear a group in it (a spawned child is set at once)
 *   closeWatchTable(slot)
 *   ack(fd, generation, bytes)   JavaScript took `bytes` of that stream's output
 *   closeOutput(fd, generation)   stop reading it (no OUTPUT_END follows)
 * Events come in order through one queue: a child's SPAWNED before its EXITED
 * and before any of its output. An output stream is named by its fd and a
 * generation (fds are reused; a stale name is ignored).
 *
 * The child runs in a new session (so pid = pgid), with every signal at its
 * default disposition and none blocked (but glibc's internal signals 32 and
 * 33, which its posix_spawn leaves ignored and every glibc program sets up),
 * stdin from a pipe or /dev/null, and no descriptor but 0, 1 and 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

#if !defined(__GLIBC__) || !__GLIBC_PREREQ(2, 34)
#error "needs glibc >= 2.34 (posix_spawn_file_actions_addclosefrom_np)"
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* An epoll key that is not a (pid, pidfd) pair: the stop signal. */
#define STOP_KEY UINT64_MAX

/* What the JavaScript callback hears (its first argument). */
enum { EVENT_SPAWNED = 0, EVENT_FAILED = 1, EVENT_EXITED = 2, EVENT_OUTPUT = 3, EVENT_OUTPUT_END = 4 };

/* Epoll keys with this bit are output streams (fd in the low bits); others are (pid, pidfd). */
#define OUTPUT_KEY (1ull << 62)
/*
 * The most read from one stream in one go, and how far it may run ahead of
 * `ack`: what a task held back by a slow reader keeps in the agent's memory
 * (plus a chunk). 1 MiB ahead measured no faster.
 */
#define OUTPUT_CHUNK_BYTES (256 * 1024)
#define OUTPUT_AHEAD_BYTES (512 * 1024)

typedef struct {
  int32_t kind;
  int32_t values[6];
  /* OUTPUT: the bytes read, in a block of the pool (given back once copied out). */
  char *data;
  size_t length;
} event_t;

/* A child's stdout or stderr being read. Guarded by the watcher's output lock. */
typedef struct {
  int32_t generation;
  /* Bytes handed to JavaScript and not yet acked. */
  int64_t ahead;
  /* Waiting in epoll for data (else: being read, or held back until an ack). */
  bool armed;
  /* The watcher thread is reading it right now (it closes it, if asked meanwhile). */
  bool reading;
  bool close_requested;
  /*
   * Its last OUTPUT event, while still queued with room in its block: more
   * output is read into that block rather than sent as a chunk of its own.
   * A busy event loop gets the output of a writer of small pieces in large
   * chunks (as its own reads of a pipe would), an idle one at once.
   */
  event_t *pending;
} output_t;

/* One queued spawn, its strings owned. */
typedef struct job {
  struct job *next;
  int32_t id;
  char *file, *cwd, *path;
  char **argv, **envp;
  bool with_stdin;
  int32_t table; /* the slot of the table to mark the child in, or -1 */
} job_t;

/* A watch table: the memfd, and its mapping in this process. */
typedef struct {
  int fd;
  uint8_t *bits;
  size_t bytes;
} table_t;

#define MAX_TABLES 256

/* One per Node environment (the main thread, or a worker). */
typedef struct {
  int epoll_fd;
  int stop_fd;
  pthread_t watch_thread, spawn_thread;
  int threads_started;
  napi_threadsafe_function on_event;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  job_t *first, *last;
  bool stopping;
  /* Watch tables (see below), one per runtime; a free slot has fd -1. */
  table_t tables[MAX_TABLES];
  /* Output streams by fd (NULL: not one), and the generation of the next one. */
  pthread_mutex_t output_lock;
  output_t **outputs;
  int output_slots;
  int32_t next_generation;
} watcher_t;

/* ---- watch tables ------------------------------------------------------ */

/*
 * One bit per possible pid, in shared memory (a memfd) that the runtime's
 * watchdog process reads when the agent dies: a set bit is a process group to
 * kill. Setting one costs no system call and no message, and the spawn thread
 * sets a child's bit the moment posix_spawn returns, before anyone hears of
 * it. One table per runtime, so disposing one runtime kills only its tasks.
 * Slots are made and freed on the main thread; the spawn thread only touches
 * the slot of a job it was given, which outlives the job.
 */
static void set_watched(watcher_t *watcher, int32_t slot, int64_t id, bool watched) {
  if (slot < 0 || slot >= MAX_TABLES) return;
  table_t *table = &watcher->tables[slot];
  if (table->bits == NULL || id <= 1 || (uint64_t)id / 8 >= table->bytes) return;
  uint8_t bit = (uint8_t)(1u << (id % 8));
  if (watched)
    __atomic_fetch_or(&table->bits[id / 8], bit, __ATOMIC_RELEASE);
  else
    __atomic_fetch_and(&table->bits[id / 8], (uint8_t)~bit, __ATOMIC_RELEASE);
}

static void free_table(table_t *table) {
  if (table->bits != NULL) munmap(table->bits, table->bytes);
  if (table->fd >= 0) close(table->fd);
  table->bits = NULL;
  table->fd = -1;
}

/* Makes a table in a free slot; returns the slot, or -1. */
static int32_t make_table(watcher_t *watcher) {
  int32_t slot = 0;
  while (slot < MAX_TABLES && watcher->tables[slot].fd >= 0) slot++;
  if (slot == MAX_TABLES) return -1;
  size_t pid_max = 4194304; /* the most Linux allows */
  FILE *file = fopen("/proc/sys/kernel/pid_max", "re");
  if (file != NULL) {
    unsigned long value;
    if (fscanf(file, "%lu", &value) == 1 && value > 0 && value <= 4194304) pid_max = value;
    fclose(file);
  }
  table_t *table = &watcher->tables[slot];
  table->bytes = (pid_max + 7) / 8;
  table->fd = memfd_create("overthere-watch-table", MFD_CLOEXEC);
  if (table->fd < 0) return -1;
  void *bits = MAP_FAILED;
  if (ftruncate(table->fd, (off_t)table->bytes) == 0)
    bits = mmap(NULL, table->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, table->fd, 0);
  if (bits == MAP_FAILED) {
    free_table(table);
    return -1;
  }
  table->bits = bits;
  return slot;
}

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/*
 * Output is read into 256 KiB blocks, which go back to a pool once the event
 * loop has copied the bytes out: mapped once, they cost no page faults, and
 * they do not fragment malloc's arenas (freed on another thread than the one
 * that allocated, those kept growing). The pool keeps up to POOLED_BLOCKS.
 */
#define POOLED_BLOCKS 16
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static char *pool[POOLED_BLOCKS];
static int pooled = 0;

static char *take_block(void) {
  char *block = NULL;
  pthread_mutex_lock(&pool_lock);
  if (pooled > 0) block = pool[--pooled];
  pthread_mutex_unlock(&pool_lock);
  if (block != NULL) return block;
  void *mapped = mmap(NULL, OUTPUT_CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return mapped == MAP_FAILED ? NULL : mapped;
}

static void give_block(char *block) {
  if (block == NULL) return;
  pthread_mutex_lock(&pool_lock);
  if (pooled < POOLED_BLOCKS) {
    pool[pooled++] = block;
    block = NULL;
  }
  pthread_mutex_unlock(&pool_lock);
  if (block != NULL) munmap(block, OUTPUT_CHUNK_BYTES);
}

/*
 * Queues an event for JavaScript, which owns `data` (a block) from here on.
 * Returns the event (to be touched only under the output lock, see
 * call_on_event), or NULL if it could not be queued.
 */
static event_t *post_data(watcher_t *watcher, int32_t kind, int32_t a, int32_t b, int32_t c,
                          int32_t d, int32_t e, int32_t f, char *data, size_t length) {
  event_t *event = malloc(sizeof *event);
  if (event == NULL) {
    give_block(data);
    return NULL;
  }
  *event = (event_t){.kind = kind, .values = {a, b, c, d, e, f}, .data = data, .length = length};
  if (napi_call_threadsafe_function(watcher->on_event, event, napi_tsfn_nonblocking) != napi_ok) {
    give_block(data);
    free(event);
    return NULL;
  }
  return event;
}

static output_t *find_output(watcher_t *watcher, int32_t fd, int32_t generation);

static void post(watcher_t *watcher, int32_t kind, int32_t a, int32_t b, int32_t c, int32_t d,
                 int32_t e, int32_t f) {
  post_data(watcher, kind, a, b, c, d, e, f, NULL, 0);
}

static void call_on_event(napi_env env, napi_value callback, void *context, void *data) {
  watcher_t *watcher = context;
  event_t *event = data;
  if (env != NULL && event->kind == EVENT_OUTPUT) {
    /* From here on, nothing more is read into this event's block. */
    pthread_mutex_lock(&watcher->output_lock);
    output_t *output = find_output(watcher, event->values[0], event->values[1]);
    if (output != NULL && output->pending == event) output->pending = NULL;
    pthread_mutex_unlock(&watcher->output_lock);
  }
  if (env != NULL && callback != NULL) {
    napi_value undefined, args[8];
    napi_get_undefined(env, &undefined);
    napi_create_int32(env, event->kind, &args[0]);
    for (int i = 0; i < 6; i++) napi_create_int32(env, event->values[i], &args[i + 1]);
    args[7] = undefined;
    if (event->data != NULL) {
      /*
       * Copied into a buffer of Node's own, like the one a socket read
       * fills. Handed over as external buffers instead (freed by a weak
       * callback after a collection found them dead), the bytes were freed
       * late: for 1 GiB of output, RSS grew by 45-50 MiB more and the
       * output log took it at half the rate; telling V8 about them as
       * external memory bought the RSS back with more collections.
       */
      napi_create_buffer_copy(env, event->length, event->data, NULL, &args[7]);
    }
    napi_call_function(env, undefined, callback, 8, args, NULL);
  }
  give_block(event->data);
  free(event);
}

/* ---- output reading --------------------------------------------------- */

/* Starts reading `fd` (a pipe's read end) as `generation`. Called with the output lock held. */
static bool add_output(watcher_t *watcher, int fd, int32_t generation) {
  output_t *output = calloc(1, sizeof *output);
  if (output == NULL || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
    free(output);
    return false;
  }
  if (fd >= watcher->output_slots) {
    int slots = fd + 1 > watcher->output_slots * 2 ? fd + 1 : watcher->output_slots * 2;
    output_t **outputs = realloc(watcher->outputs, (size_t)slots * sizeof *outputs);
    if (outputs == NULL) {
      free(output);
      return false;
    }
    for (int slot = watcher->output_slots; slot < slots; slot++) outputs[slot] = NULL;
    watcher->outputs = outputs;
    watcher->output_slots = slots;
  }
  output->generation = generation;
  output->armed = true;
  struct epoll_event event = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = OUTPUT_KEY | (uint32_t)fd};
  if (epoll_ctl(watcher->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
    free(output);
    return false;
  }
  watcher->outputs[fd] = output;
  return true;
}

/* Stops reading `fd`, leaving it open. Called with the output lock held. */
static void remove_output(watcher_t *watcher, int fd) {
  epoll_ctl(watcher->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
  free(watcher->outputs[fd]);
  watcher->outputs[fd] = NULL;
}

/* Forgets stream `fd` and closes it. Called with the output lock held. */
static void drop_output(watcher_t *watcher, int fd) {
  remove_output(watcher, fd);
  close(fd);
}

/* Waits for more of `fd` in epoll again. Called with the output lock held. */
static void arm_output(watcher_t *watcher, int fd, output_t *output) {
  struct epoll_event event = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = OUTPUT_KEY | (uint32_t)fd};
  output->armed = epoll_ctl(watcher->epoll_fd, EPOLL_CTL_MOD, fd, &event) == 0;
}

/* Reads `fd` into `block` from `*length` on: until it is full, the pipe is empty, at its end, or failed. */
static void read_into(int fd, char *block, size_t *length, bool *ended, int *error) {
  while (*length < OUTPUT_CHUNK_BYTES) {
    ssize_t count = read(fd, block + *length, OUTPUT_CHUNK_BYTES - *length);
    if (count > 0) {
      *length += (size_t)count;
    } else if (count == 0) {
      *ended = true;
      return;
    } else if (errno != EINTR) {
      if (errno != EAGAIN) *error = errno;
      return;
    }
  }
}

/* After a read of `fd`: its end, a close asked meanwhile, or wait for more. Output lock held. */
static void after_read(watcher_t *watcher, int fd, output_t *output, bool ended, int error) {
  if (output->close_requested) {
    drop_output(watcher, fd);
  } else if (ended || error != 0) {
    /* Posted before the fd is closed and can be reused. */
    post(watcher, EVENT_OUTPUT_END, fd, output->generation, error, 0, 0, 0);
    drop_output(watcher, fd);
  } else if (output->ahead < OUTPUT_AHEAD_BYTES) {
    arm_output(watcher, fd, output);
  }
}

/*
 * `fd` is readable (or at its end): reads what is there, up to a chunk, into
 * the block of its queued event if it has one, else into a new one that it
 * posts; at the end (or an error) posts OUTPUT_END and closes it.
 */
static void read_output(watcher_t *watcher, int fd) {
  bool ended = false;
  int error = 0;
  pthread_mutex_lock(&watcher->output_lock);
  output_t *output = fd < watcher->output_slots ? watcher->outputs[fd] : NULL;
  if (output == NULL) {
    pthread_mutex_unlock(&watcher->output_lock);
    return;
  }
  output->armed = false;
  event_t *pending = output->pending;
  if (pending != NULL) {
    /* Under the lock: the event loop cannot take the block meanwhile. */
    size_t before = pending->length;
    read_into(fd, pending->data, &pending->length, &ended, &error);
    output->ahead += (int64_t)(pending->length - before);
    if (pending->length == OUTPUT_CHUNK_BYTES) output->pending = NULL;
    after_read(watcher, fd, output, ended, error);
    pthread_mutex_unlock(&watcher->output_lock);
    return;
  }
  output->reading = true;
  int32_t generation = output->generation;
  pthread_mutex_unlock(&watcher->output_lock);

  char *block = take_block();
  size_t length = 0;
  if (block == NULL)
    error = ENOMEM;
  else
    read_into(fd, block, &length, &ended, &error);

  pthread_mutex_lock(&watcher->output_lock);
  output->reading = false;
  if (length == 0) {
    give_block(block);
  } else {
    /* Posted under the lock, so the event loop cannot take it before it is pending. */
    event_t *event = post_data(watcher, EVENT_OUTPUT, fd, generation, 0, 0, 0, 0, block, length);
    if (event == NULL && error == 0) error = ENOMEM;
    output->ahead += (int64_t)length;
    if (event != NULL && length < OUTPUT_CHUNK_BYTES) output->pending = event;
  }
  after_read(watcher, fd, output, ended, error);
  pthread_mutex_unlock(&watcher->output_lock);
}

/* The output stream `fd` of `generation`, with the output lock held; NULL if it is gone. */
static output_t *find_output(watcher_t *watcher, int32_t fd, int32_t generation) {
  if (fd < 0 || fd >= watcher->output_slots) return NULL;
  output_t *output = watcher->outputs[fd];
  return output != NULL && output->generation == generation ? output : NULL;
}

/* ---- exit watching ---------------------------------------------------- */

static void *watch_exits(void *arg) {
  watcher_t *watcher = arg;
  struct epoll_event events[64];
  for (;;) {
    int count = epoll_wait(watcher->epoll_fd, events, 64, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    for (int i = 0; i < count; i++) {
      uint64_t key = events[i].data.u64;
      if (key == STOP_KEY) return NULL;
      if (key & OUTPUT_KEY) {
        read_output(watcher, (int)(key & 0xffffffffu));
        continue;
      }
      int pidfd = (int)(key & 0xffffffffu);
      pid_t pid = (pid_t)(key >> 32);
      /*
       * Whatever the task left in its group dies with it. The leader is a
       * zombie until reaped below, so its pid (the group's id) cannot have
       * been reused.
       */
      kill(-pid, SIGKILL);
      int status = 0;
      pid_t reaped;
      do reaped = waitpid(pid, &status, 0);
      while (reaped < 0 && errno == EINTR);
      epoll_ctl(watcher->epoll_fd, EPOLL_CTL_DEL, pidfd, NULL);
      close(pidfd);
      int32_t code = reaped == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      int32_t signal = reaped == pid && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      post(watcher, EVENT_EXITED, pid, code, signal, 0, 0, 0);
    }
  }
}

/* ---- spawning ------------------------------------------------------- */

typedef struct {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
} spawn_setup_t;

/* posix_spawn, and like execvp a file without a shebang runs under /bin/sh. */
static int spawn_file(pid_t *pid, const char *file, char **argv, char **envp, spawn_setup_t *setup) {
  int error = posix_spawn(pid, file, &setup->actions, &setup->attributes, argv, envp);
  if (error != ENOEXEC) return error;
  size_t count = 0;
  while (argv[count] != NULL) count++;
  char **shell_argv = calloc(count + 2, sizeof *shell_argv);
  if (shell_argv == NULL) return ENOMEM;
  shell_argv[0] = "/bin/sh";
  shell_argv[1] = (char *)file;
  for (size_t i = 1; i < count; i++) shell_argv[i + 1] = argv[i];
  error = posix_spawn(pid, "/bin/sh", &setup->actions, &setup->attributes, shell_argv, envp);
  free(shell_argv);
  return error;
}

/*
 * Finds `file` like execvp: as given when it has a slash, else in each
 * directory of `path` (relative ones against the child's cwd).
 */
static int spawn_found(pid_t *pid, const job_t *job, spawn_setup_t *setup) {
  const char *file = job->file;
  if (strchr(file, '/') != NULL) return spawn_file(pid, file, job->argv, job->envp, setup);
  if (*file == '\0') return ENOENT;
  int result = ENOENT;
  const char *start = job->path;
  char candidate[PATH_MAX];
  for (;;) {
    const char *end = strchr(start, ':');
    int length = (int)(end == NULL ? strlen(start) : (size_t)(end - start));
    int written;
    if (length == 0)
      written = snprintf(candidate, sizeof candidate, "%s/%s", job->cwd, file);
    else if (start[0] == '/')
      written = snprintf(candidate, sizeof candidate, "%.*s/%s", length, start, file);
    else
      written = snprintf(candidate, sizeof candidate, "%s/%.*s/%s", job->cwd, length, start, file);
    if (written > 0 && (size_t)written < sizeof candidate) {
      if (faccessat(AT_FDCWD, candidate, X_OK, AT_EACCESS) == 0) {
        int error = spawn_file(pid, candidate, job->argv, job->envp, setup);
        if (error != ENOENT && error != ENOTDIR && error != EACCES) return error;
        if (error == EACCES) result = EACCES;
      } else if (errno == EACCES) {
        result = EACCES;
      }
    }
    if (end == NULL) return result;
    start = end + 1;
  }
}

/* Starts one queued job and posts SPAWNED or FAILED (then, some day, EXITED). */
static void run_job(watcher_t *watcher, const job_t *job) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  pid_t pid = -1;
  int error = 0;
  if ((job->with_stdin && pipe2(in, O_CLOEXEC) != 0) || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0) {
    error = errno;
  } else {
    spawn_setup_t setup;
    posix_spawn_file_actions_init(&setup.actions);
    posix_spawnattr_init(&setup.attributes);
    if (job->with_stdin)
      posix_spawn_file_actions_adddup2(&setup.actions, in[0], 0);
    else
      posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&setup.actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&setup.actions, err[1], 2);
    /* Nothing else: a pty master or a socket the agent left inheritable stays with the agent. */
    posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
    posix_spawn_file_actions_addchdir_np(&setup.actions, job->cwd);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&setup.attributes, &all);
    posix_spawnattr_setsigmask(&setup.attributes, &none);
    posix_spawnattr_setflags(&setup.attributes,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    error = spawn_found(&pid, job, &setup);
    posix_spawn_file_actions_destroy(&setup.actions);
    posix_spawnattr_destroy(&setup.attributes);
  }
  /* The child's ends are the child's alone now. */
  if (in[0] >= 0) close(in[0]);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  if (error != 0) {
    if (in[1] >= 0) close(in[1]);
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    post(watcher, EVENT_FAILED, job->id, error, 0, 0, 0, 0);
    return;
  }
  set_watched(watcher, job->table, pid, true);
  /*
   * SPAWNED is queued before the exit or any output can be seen (the output
   * lock keeps the reader out until then), so it reaches JavaScript first.
   * Generation -1: the pipes could not be watched here; JavaScript reads them.
   */
  pthread_mutex_lock(&watcher->output_lock);
  int32_t generation = watcher->next_generation++ & 0x7fffffff;
  if (!add_output(watcher, out[0], generation)) {
    generation = -1;
  } else if (!add_output(watcher, err[0], generation)) {
    remove_output(watcher, out[0]);
    generation = -1;
  }
  post(watcher, EVENT_SPAWNED, job->id, pid, job->with_stdin ? in[1] : -1, out[0], err[0],
       generation);
  pthread_mutex_unlock(&watcher->output_lock);
  int pidfd = pidfd_open(pid);
  struct epoll_event event = {.events = EPOLLIN,
                              .data.u64 = ((uint64_t)(uint32_t)pid << 32) | (uint32_t)pidfd};
  if (pidfd < 0 || epoll_ctl(watcher->epoll_fd, EPOLL_CTL_ADD, pidfd, &event) != 0) {
    /* Its exit could not be seen: it must not run. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (pidfd >= 0) close(pidfd);
    post(watcher, EVENT_EXITED, pid, -1, SIGKILL, 0, 0, 0);
  }
}

static void free_strings(char **strings) {
  if (strings == NULL) return;
  for (char **each = strings; *each != NULL; each++) free(*each);
  free(strings);
}

static void free_job(job_t *job) {
  free(job->file);
  free(job->cwd);
  free(job->path);
  free_strings(job->argv);
  free_strings(job->envp);
  free(job);
}

static void *spawn_jobs(void *arg) {
  watcher_t *watcher = arg;
  pthread_mutex_lock(&watcher->lock);
  for (;;) {
    while (watcher->first == NULL && !watcher->stopping) pthread_cond_wait(&watcher->wake, &watcher->lock);
    if (watcher->stopping) break;
    job_t *job = watcher->first;
    watcher->first = job->next;
    if (watcher->first == NULL) watcher->last = NULL;
    pthread_mutex_unlock(&watcher->lock);
    run_job(watcher, job);
    free_job(job);
    pthread_mutex_lock(&watcher->lock);
  }
  pthread_mutex_unlock(&watcher->lock);
  return NULL;
}

/* ---- setup and teardown ----------------------------------------------- */

static void stop_watcher(void *data) {
  watcher_t *watcher = data;
  if (watcher->threads_started) {
    pthread_mutex_lock(&watcher->lock);
    watcher->stopping = true;
    pthread_cond_signal(&watcher->wake);
    pthread_mutex_unlock(&watcher->lock);
    uint64_t one = 1;
    ssize_t written = write(watcher->stop_fd, &one, sizeof one);
    (void)written;
    pthread_join(watcher->spawn_thread, NULL);
    pthread_join(watcher->watch_thread, NULL);
    napi_release_threadsafe_function(watcher->on_event, napi_tsfn_release);
    while (watcher->first != NULL) {
      job_t *job = watcher->first;
      watcher->first = job->next;
      free_job(job);
    }
  }
  if (watcher->epoll_fd >= 0) close(watcher->epoll_fd);
  if (watcher->stop_fd >= 0) close(watcher->stop_fd);
  for (int slot = 0; slot < MAX_TABLES; slot++) free_table(&watcher->tables[slot]);
  for (int fd = 0; fd < watcher->output_slots; fd++) {
    if (watcher->outputs[fd] != NULL) {
      close(fd);
      free(watcher->outputs[fd]);
    }
  }
  free(watcher->outputs);
  pthread_mutex_destroy(&watcher->output_lock);
  pthread_mutex_destroy(&watcher->lock);
  pthread_cond_destroy(&watcher->wake);
  free(watcher);
}

static watcher_t *get_watcher(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value callback, result;
  napi_get_cb_info(env, info, &argc, &callback, NULL, NULL);
  if (get_watcher(env) != NULL) return throw_error(env, "init: already initialised");

  int probe = pidfd_open(getpid());
  if (probe < 0) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  close(probe);

  watcher_t *watcher = calloc(1, sizeof *watcher);
  if (watcher == NULL) return throw_error(env, "init: out of memory");
  pthread_mutex_init(&watcher->lock, NULL);
  pthread_mutex_init(&watcher->output_lock, NULL);
  pthread_cond_init(&watcher->wake, NULL);
  for (int slot = 0; slot < MAX_TABLES; slot++) watcher->tables[slot].fd = -1;
  watcher->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  watcher->stop_fd = eventfd(0, EFD_CLOEXEC);
  napi_value name;
  napi_create_string_utf8(env, "overthere spawn events", NAPI_AUTO_LENGTH, &name);
  struct epoll_event stop = {.events = EPOLLIN, .data.u64 = STOP_KEY};
  if (watcher->epoll_fd < 0 || watcher->stop_fd < 0 ||
      epoll_ctl(watcher->epoll_fd, EPOLL_CTL_ADD, watcher->stop_fd, &stop) != 0 ||
      napi_create_threadsafe_function(env, callback, NULL, name, 0, 1, NULL, NULL, watcher,
                                      call_on_event, &watcher->on_event) != napi_ok) {
    stop_watcher(watcher);
    return throw_error(env, "init: cannot set up the exit watcher");
  }
  /* Only pending spawns and running children keep the event loop alive (see ref/unref). */
  napi_unref_threadsafe_function(env, watcher->on_event);
  if (pthread_create(&watcher->watch_thread, NULL, watch_exits, watcher) != 0) {
    napi_release_threadsafe_function(watcher->on_event, napi_tsfn_abort);
    stop_watcher(watcher);
    return throw_error(env, "init: cannot start the exit watcher thread");
  }
  if (pthread_create(&watcher->spawn_thread, NULL, spawn_jobs, watcher) != 0) {
    uint64_t one = 1;
    ssize_t written = write(watcher->stop_fd, &one, sizeof one);
    (void)written;
    pthread_join(watcher->watch_thread, NULL);
    napi_release_threadsafe_function(watcher->on_event, napi_tsfn_abort);
    stop_watcher(watcher);
    return throw_error(env, "init: cannot start the spawn thread");
  }
  watcher->threads_started = 1;
  napi_set_instance_data(env, watcher, NULL, NULL);
  napi_add_env_cleanup_hook(env, stop_watcher, watcher);
  napi_get_boolean(env, true, &result);
  return result;
}

static napi_value set_ref(napi_env env, int ref) {
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL) return throw_error(env, "not initialised");
  if (ref)
    napi_ref_threadsafe_function(env, watcher->on_event);
  else
    napi_unref_threadsafe_function(env, watcher->on_event);
  return NULL;
}

static napi_value ref(napi_env env, napi_callback_info info) {
  (void)info;
  return set_ref(env, 1);
}

static napi_value unref(napi_env env, napi_callback_info info) {
  (void)info;
  return set_ref(env, 0);
}

/* openWatchTable() -> [slot, fd, bytes] of a new table, or null when none can be made. */
static napi_value open_watch_table(napi_env env, napi_callback_info info) {
  (void)info;
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL) return throw_error(env, "openWatchTable: not initialised");
  napi_value result, element;
  int32_t slot = make_table(watcher);
  if (slot < 0) {
    napi_get_null(env, &result);
    return result;
  }
  int64_t values[3] = {slot, watcher->tables[slot].fd, (int64_t)watcher->tables[slot].bytes};
  napi_create_array_with_length(env, 3, &result);
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_int64(env, values[i], &element);
    napi_set_element(env, result, i, element);
  }
  return result;
}

/* closeWatchTable(slot): once no spawn for it is pending. */
static napi_value close_watch_table(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  watcher_t *watcher = get_watcher(env);
  int32_t slot = -1;
  napi_get_value_int32(env, arg, &slot);
  if (watcher != NULL && slot >= 0 && slot < MAX_TABLES) free_table(&watcher->tables[slot]);
  return NULL;
}

/* watch(slot, id, on): set or clear the bit of process group `id`. */
static napi_value watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL || argc < 3) return throw_error(env, "watch: 3 arguments expected");
  int32_t slot = -1;
  int64_t id = 0;
  bool on = false;
  napi_get_value_int32(env, args[0], &slot);
  napi_get_value_int64(env, args[1], &id);
  napi_get_value_bool(env, args[2], &on);
  set_watched(watcher, slot, id, on);
  return NULL;
}

/* The (fd, generation) pair of an output stream, from the first two arguments. */
static bool output_name(napi_env env, napi_value *args, size_t argc, int32_t *fd, int32_t *generation) {
  return argc >= 2 && napi_get_value_int32(env, args[0], fd) == napi_ok &&
         napi_get_value_int32(env, args[1], generation) == napi_ok;
}

/* ack(fd, generation, bytes): JavaScript took `bytes`; read on if the stream was held back. */
static napi_value ack(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  watcher_t *watcher = get_watcher(env);
  int32_t fd = -1, generation = -1;
  int64_t bytes = 0;
  if (watcher == NULL || !output_name(env, args, argc, &fd, &generation) || argc < 3 ||
      napi_get_value_int64(env, args[2], &bytes) != napi_ok) {
    return throw_error(env, "ack: (fd, generation, bytes) expected");
  }
  pthread_mutex_lock(&watcher->output_lock);
  output_t *output = find_output(watcher, fd, generation);
  if (output != NULL) {
    output->ahead -= bytes;
    if (output->ahead < 0) output->ahead = 0;
    if (!output->armed && !output->reading && output->ahead < OUTPUT_AHEAD_BYTES) {
      arm_output(watcher, fd, output);
    }
  }
  pthread_mutex_unlock(&watcher->output_lock);
  return NULL;
}

/* closeOutput(fd, generation): stop reading and close it now (no OUTPUT_END follows). */
static napi_value close_output(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  watcher_t *watcher = get_watcher(env);
  int32_t fd = -1, generation = -1;
  if (watcher == NULL || !output_name(env, args, argc, &fd, &generation)) {
    return throw_error(env, "closeOutput: (fd, generation) expected");
  }
  pthread_mutex_lock(&watcher->output_lock);
  output_t *output = find_output(watcher, fd, generation);
  if (output != NULL) {
    /* Not under the reader's feet: it closes the fd itself when its read is done. */
    if (output->reading)
      output->close_requested = true;
    else
      drop_output(watcher, fd);
  }
  pthread_mutex_unlock(&watcher->output_lock);
  return NULL;
}

/* A JavaScript string as a new C string (NULL on failure). */
static char *string_of(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char *text = malloc(length + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, value, text, length + 1, &length);
  return text;
}

/* A JavaScript array of strings as a NULL-terminated C array (NULL on failure). */
static char **strings_of(napi_env env, napi_value array) {
  uint32_t length = 0;
  if (napi_get_array_length(env, array, &length) != napi_ok) return NULL;
  char **strings = calloc(length + 1, sizeof *strings);
  if (strings == NULL) return NULL;
  for (uint32_t i = 0; i < length; i++) {
    napi_value element;
    napi_get_element(env, array, i, &element);
    strings[i] = string_of(env, element);
    if (strings[i] == NULL) {
      free_strings(strings);
      return NULL;
    }
  }
  return strings;
}

static napi_value spawn(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value args[8];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 8) return throw_error(env, "spawn: 8 arguments expected");
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL) return throw_error(env, "spawn: not initialised");
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_error(env, "spawn: out of memory");
  napi_get_value_int32(env, args[0], &job->id);
  job->file = string_of(env, args[1]);
  job->argv = strings_of(env, args[2]);
  job->envp = strings_of(env, args[3]);
  job->cwd = string_of(env, args[4]);
  napi_get_value_bool(env, args[5], &job->with_stdin);
  job->path = string_of(env, args[6]);
  napi_get_value_int32(env, args[7], &job->table);
  if (job->file == NULL || job->argv == NULL || job->argv[0] == NULL || job->envp == NULL ||
      job->cwd == NULL || job->path == NULL) {
    free_job(job);
    return throw_error(env, "spawn: invalid arguments");
  }
  pthread_mutex_lock(&watcher->lock);
  if (watcher->last != NULL)
    watcher->last->next = job;
  else
    watcher->first = job;
  watcher->last = job;
  pthread_cond_signal(&watcher->wake);
  pthread_mutex_unlock(&watcher->lock);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"init", NULL, init, NULL, NULL, NULL, napi_default, NULL},
      {"spawn", NULL, spawn, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, ref, NULL, NULL, NULL, napi_default, NULL},
      {"unref", NULL, unref, NULL, NULL, NULL, napi_default, NULL},
      {"openWatchTable", NULL, open_watch_table, NULL, NULL, NULL, napi_default, NULL},
      {"closeWatchTable", NULL, close_watch_table, NULL, NULL, NULL, napi_default, NULL},
      {"watch", NULL, watch, NULL, NULL, NULL, napi_default, NULL},
      {"ack", NULL, ack, NULL, NULL, NULL, napi_default, NULL},
      {"closeOutput", NULL, close_output, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof *properties, properties);
  return exports;
}
