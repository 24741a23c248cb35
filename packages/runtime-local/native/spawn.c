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
 * JavaScript API (see src/native-spawn.ts):
 *   init(onExit(pid, code, signal)) -> bool   false: this kernel has no pidfd_open
 *   spawn(file, argv[], env[], cwd, withStdin, path)
 *     -> [pid, stdinFd (-1 without), stdoutFd, stderrFd] | errno (a positive number)
 *   ref() / unref()   keep the event loop alive while children run
 *
 * The child runs in a new session (so pid = pgid), with every signal at its
 * default disposition and none blocked (but glibc's internal signals 32 and 33,
 * which its posix_spawn leaves ignored and every glibc program sets up), stdin from a pipe or /dev/null, and no
 * descriptor but 0, 1 and 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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

/* One per Node environment (the main thread, or a worker). */
typedef struct {
  int epoll_fd;
  int stop_fd;
  pthread_t thread;
  int thread_started;
  napi_threadsafe_function on_exit;
} watcher_t;

typedef struct {
  int32_t pid;
  int32_t code;   /* exit code, or -1 when killed by a signal */
  int32_t signal; /* signal number, or 0 */
} exit_event_t;

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* ---- exit watching ---------------------------------------------------- */

static void *watch_exits(void *arg) {
  watcher_t *watcher = arg;
  struct epoll_event events[64];
  for (;;) {
    int count = epoll_wait(watcher->epoll_fd, events, 64, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < count; i++) {
      uint64_t key = events[i].data.u64;
      if (key == STOP_KEY) goto stop;
      int pidfd = (int)(key & 0xffffffffu);
      pid_t pid = (pid_t)(key >> 32);
      int status = 0;
      pid_t reaped;
      do reaped = waitpid(pid, &status, 0);
      while (reaped < 0 && errno == EINTR);
      epoll_ctl(watcher->epoll_fd, EPOLL_CTL_DEL, pidfd, NULL);
      close(pidfd);
      exit_event_t *event = malloc(sizeof *event);
      if (event == NULL) continue;
      event->pid = pid;
      event->code = reaped == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      event->signal = reaped == pid && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      if (napi_call_threadsafe_function(watcher->on_exit, event, napi_tsfn_nonblocking) != napi_ok) {
        free(event);
      }
    }
  }
stop:
  napi_release_threadsafe_function(watcher->on_exit, napi_tsfn_release);
  return NULL;
}

static void call_on_exit(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  exit_event_t *event = data;
  if (env != NULL && callback != NULL) {
    napi_value undefined, args[3];
    napi_get_undefined(env, &undefined);
    napi_create_int32(env, event->pid, &args[0]);
    napi_create_int32(env, event->code, &args[1]);
    napi_create_int32(env, event->signal, &args[2]);
    napi_call_function(env, undefined, callback, 3, args, NULL);
  }
  free(event);
}

static void stop_watcher(void *data) {
  watcher_t *watcher = data;
  if (watcher->thread_started) {
    uint64_t one = 1;
    ssize_t written = write(watcher->stop_fd, &one, sizeof one);
    (void)written;
    pthread_join(watcher->thread, NULL);
  }
  if (watcher->epoll_fd >= 0) close(watcher->epoll_fd);
  if (watcher->stop_fd >= 0) close(watcher->stop_fd);
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
  watcher->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  watcher->stop_fd = eventfd(0, EFD_CLOEXEC);
  napi_value name;
  napi_create_string_utf8(env, "overthere exit watcher", NAPI_AUTO_LENGTH, &name);
  struct epoll_event stop = {.events = EPOLLIN, .data.u64 = STOP_KEY};
  if (watcher->epoll_fd < 0 || watcher->stop_fd < 0 ||
      epoll_ctl(watcher->epoll_fd, EPOLL_CTL_ADD, watcher->stop_fd, &stop) != 0 ||
      napi_create_threadsafe_function(env, callback, NULL, name, 0, 1, NULL, NULL, NULL,
                                      call_on_exit, &watcher->on_exit) != napi_ok) {
    stop_watcher(watcher);
    return throw_error(env, "init: cannot set up the exit watcher");
  }
  /* Only running children keep the event loop alive (see ref/unref). */
  napi_unref_threadsafe_function(env, watcher->on_exit);
  if (pthread_create(&watcher->thread, NULL, watch_exits, watcher) != 0) {
    napi_release_threadsafe_function(watcher->on_exit, napi_tsfn_abort);
    stop_watcher(watcher);
    return throw_error(env, "init: cannot start the exit watcher thread");
  }
  watcher->thread_started = 1;
  napi_set_instance_data(env, watcher, NULL, NULL);
  napi_add_env_cleanup_hook(env, stop_watcher, watcher);
  napi_get_boolean(env, true, &result);
  return result;
}

static napi_value set_ref(napi_env env, napi_callback_info info, int ref) {
  (void)info;
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL) return throw_error(env, "not initialised");
  if (ref)
    napi_ref_threadsafe_function(env, watcher->on_exit);
  else
    napi_unref_threadsafe_function(env, watcher->on_exit);
  return NULL;
}

static napi_value ref(napi_env env, napi_callback_info info) { return set_ref(env, info, 1); }
static napi_value unref(napi_env env, napi_callback_info info) { return set_ref(env, info, 0); }

/* ---- spawning ------------------------------------------------------- */

/* A JavaScript string as a new C string (NULL on failure). */
static char *string_of(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char *text = malloc(length + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, value, text, length + 1, &length);
  return text;
}

static void free_strings(char **strings) {
  if (strings == NULL) return;
  for (char **each = strings; *each != NULL; each++) free(*each);
  free(strings);
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
static int spawn_found(pid_t *pid, const char *file, const char *cwd, const char *path, char **argv,
                       char **envp, spawn_setup_t *setup) {
  if (strchr(file, '/') != NULL) return spawn_file(pid, file, argv, envp, setup);
  if (*file == '\0') return ENOENT;
  int result = ENOENT;
  const char *start = path;
  char candidate[PATH_MAX];
  for (;;) {
    const char *end = strchr(start, ':');
    size_t dir_length = end == NULL ? strlen(start) : (size_t)(end - start);
    int written;
    if (dir_length == 0)
      written = snprintf(candidate, sizeof candidate, "%s/%s", cwd, file);
    else if (start[0] == '/')
      written = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)dir_length, start, file);
    else
      written = snprintf(candidate, sizeof candidate, "%s/%.*s/%s", cwd, (int)dir_length, start, file);
    if (written > 0 && (size_t)written < sizeof candidate &&
        faccessat(AT_FDCWD, candidate, X_OK, AT_EACCESS) == 0) {
      int error = spawn_file(pid, candidate, argv, envp, setup);
      if (error != ENOENT && error != ENOTDIR && error != EACCES) return error;
      if (error == EACCES) result = EACCES;
    } else if (written > 0 && errno == EACCES) {
      result = EACCES;
    }
    if (end == NULL) return result;
    start = end + 1;
  }
}

static napi_value spawn(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6], result;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 6) return throw_error(env, "spawn: 6 arguments expected");
  watcher_t *watcher = get_watcher(env);
  if (watcher == NULL) return throw_error(env, "spawn: not initialised");

  bool with_stdin = false;
  napi_get_value_bool(env, args[4], &with_stdin);
  char *file = string_of(env, args[0]);
  char **argv = strings_of(env, args[1]);
  char **envp = strings_of(env, args[2]);
  char *cwd = string_of(env, args[3]);
  char *path = string_of(env, args[5]);
  int error = 0;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  pid_t pid = -1;
  int pidfd = -1;
  spawn_setup_t setup;
  int setup_done = 0;

  if (file == NULL || argv == NULL || argv[0] == NULL || envp == NULL || cwd == NULL || path == NULL) {
    error = EINVAL;
    goto done;
  }
  if ((with_stdin && pipe2(in, O_CLOEXEC) != 0) || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0) {
    error = errno;
    goto done;
  }

  posix_spawn_file_actions_init(&setup.actions);
  posix_spawnattr_init(&setup.attributes);
  setup_done = 1;
  if (with_stdin)
    posix_spawn_file_actions_adddup2(&setup.actions, in[0], 0);
  else
    posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&setup.actions, err[1], 2);
  /* Nothing else: a pty master or a socket the agent left inheritable stays with the agent. */
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  posix_spawn_file_actions_addchdir_np(&setup.actions, cwd);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&setup.attributes, &all);
  posix_spawnattr_setsigmask(&setup.attributes, &none);
  posix_spawnattr_setflags(&setup.attributes,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  error = spawn_found(&pid, file, cwd, path, argv, envp, &setup);
  if (error != 0) goto done;

  pidfd = pidfd_open(pid);
  struct epoll_event event = {.events = EPOLLIN,
                              .data.u64 = ((uint64_t)(uint32_t)pid << 32) | (uint32_t)pidfd};
  if (pidfd < 0 || epoll_ctl(watcher->epoll_fd, EPOLL_CTL_ADD, pidfd, &event) != 0) {
    /* Its exit could not be seen: it must not run. */
    error = errno;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (pidfd >= 0) close(pidfd);
    goto done;
  }

done:
  if (setup_done) {
    posix_spawn_file_actions_destroy(&setup.actions);
    posix_spawnattr_destroy(&setup.attributes);
  }
  /* The child's ends are the child's alone now. */
  if (in[0] >= 0) close(in[0]);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  free(file);
  free_strings(argv);
  free_strings(envp);
  free(cwd);
  free(path);
  if (error != 0) {
    if (in[1] >= 0) close(in[1]);
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    napi_create_int32(env, error, &result);
    return result;
  }
  napi_value element;
  napi_create_array_with_length(env, 4, &result);
  int32_t values[4] = {pid, with_stdin ? in[1] : -1, out[0], err[0]};
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_int32(env, values[i], &element);
    napi_set_element(env, result, i, element);
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"init", NULL, init, NULL, NULL, NULL, napi_default, NULL},
      {"spawn", NULL, spawn, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, ref, NULL, NULL, NULL, napi_default, NULL},
      {"unref", NULL, unref, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof *properties, properties);
  return exports;
}
