/* A fake libnvidia-ml.so.1 for tests: the real nvidia-ml-py loads it through LD_LIBRARY_PATH and calls it
 * through ctypes exactly as it calls a driver. No dependencies: cc -shared -fPIC -o libnvidia-ml.so.1 fake_nvml.c
 *
 * Built with -DFAKE_R470 it lacks the _v3 process calls, as drivers before R510 do (the binding resolves
 * symbols lazily, so a missing one fails at its first call with NVML_ERROR_FUNCTION_NOT_FOUND).
 *
 * Configured by the file named in FAKE_LIBNVML_CONFIG, one "key value..." per line (tests/fake_libnvml/config.py
 * writes it). Keys before the first "device" line are global:
 *   driver VERSION | init_error CODE | log PATH | fd_dir DIR (opens DIR/nvidiactl and DIR/nvidiaN at init,
 *   without O_CLOEXEC, as the real library keeps /dev/nvidia* open) | proc_stride 24|32 (bytes per process
 *   entry written: early R535 wrote 32) | util_sizing_count N (the utilisation sizing call says N) |
 *   util_empty_success 1 (no sample newer than asked: SUCCESS with count 0, not NOT_FOUND) |
 *   util_grow 1 (every other fill after a sizing call answers INSUFFICIENT_SIZE: a sample arrived between)
 * After "device": name TEXT | uuid TEXT | minor N | energy_mj N (the counter at boot; -1: no counter, pre-Volta) |
 *   watts W (the counter advances at this power on the boot clock, shared by all processes) |
 *   instant_watts W (-1: no instant power field) | mig -1|0|1 (-1: not supported) | procs PID... |
 *   graphics PID... | pid_file PATH (pids one per line, re-read at every call) | mps_procs PID... |
 *   mps_pid_file PATH (MPS clients; with them the compute list shows only "procs", the MPS server) |
 *   pid_offset N (pids reported as pid+N: host pids seen from a container) | util_period_ms N (samples on
 *   a grid of this period, one per listed process; 0: no per-process utilisation, NOT_SUPPORTED) |
 *   sm PID PERCENT (PID 0: every other process) | bad_sample PID VALUE (one extra sample with this smUtil
 *   at every grid point) | err FUNCTION CODE | lost_after_s S
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXDEV 16
#define MAXPID 64
#define MAXERR 16
#define MAXSM 16

typedef struct {
    char name[96], uuid[96], pid_file[512], mps_pid_file[512];
    unsigned minor, util_period_ms;
    long long energy_mj;
    double watts, instant_watts, lost_after_s;
    int mig, nprocs, ngraphics, nmps, nsm, nerr, bad_pid;
    unsigned procs[MAXPID], graphics[MAXPID], mps[MAXPID], bad_value, pid_offset;
    unsigned sm_pid[MAXSM], sm_val[MAXSM];
    char err_fn[MAXERR][64];
    int err_code[MAXERR];
} dev_t_;

static dev_t_ devs[MAXDEV];
static int ndev, init_error, proc_stride = 24, util_sizing_count, util_empty_success, util_grow, grow_pending, grow_calls, initialised;
static char driver[80] = "550.54.15", log_path[512], fd_dir[512];
static double t0;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long long wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static void log_event(const char *what) {
    if (!log_path[0]) return;
    FILE *f = fopen(log_path, "a");
    if (!f) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(f, "%s %.6f\n", what, ts.tv_sec + ts.tv_nsec / 1e9);
    fclose(f);
}

static int parse_pids(char *rest, unsigned *out) {
    int n = 0;
    for (char *t = strtok(rest, " \t\n"); t && n < MAXPID; t = strtok(NULL, " \t\n")) out[n++] = strtoul(t, 0, 10);
    return n;
}

static void load_config(void) {
    const char *path = getenv("FAKE_LIBNVML_CONFIG");
    ndev = 0;
    init_error = 0;
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    dev_t_ *d = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *sp = strchr(line, ' ');
        char *val = sp ? sp + 1 : line + strlen(line);
        if (sp) *sp = 0;
        const char *k = line;
        if (!strcmp(k, "device")) {
            if (ndev >= MAXDEV) break;
            d = &devs[ndev];
            memset(d, 0, sizeof *d);
            d->minor = ndev;
            d->mig = -1;
            d->instant_watts = -2; /* same as watts */
            d->lost_after_s = -1;
            d->util_period_ms = 100;
            d->bad_pid = -1;
            snprintf(d->name, sizeof d->name, "NVIDIA H100 80GB HBM3");
            snprintf(d->uuid, sizeof d->uuid, "GPU-%08x-0000-4000-8000-fakefakefake", ndev);
            ndev++;
        } else if (!d) {
            if (!strcmp(k, "driver")) snprintf(driver, sizeof driver, "%s", val);
            else if (!strcmp(k, "init_error")) init_error = atoi(val);
            else if (!strcmp(k, "log")) snprintf(log_path, sizeof log_path, "%s", val);
            else if (!strcmp(k, "fd_dir")) snprintf(fd_dir, sizeof fd_dir, "%s", val);
            else if (!strcmp(k, "proc_stride")) proc_stride = atoi(val);
            else if (!strcmp(k, "util_sizing_count")) util_sizing_count = atoi(val);
            else if (!strcmp(k, "util_grow")) util_grow = atoi(val);
            else if (!strcmp(k, "util_empty_success")) util_empty_success = atoi(val);
        } else if (!strcmp(k, "name")) snprintf(d->name, sizeof d->name, "%s", val);
        else if (!strcmp(k, "uuid")) snprintf(d->uuid, sizeof d->uuid, "%s", val);
        else if (!strcmp(k, "minor")) d->minor = strtoul(val, 0, 10);
        else if (!strcmp(k, "energy_mj")) d->energy_mj = strtoll(val, 0, 10);
        else if (!strcmp(k, "watts")) d->watts = atof(val);
        else if (!strcmp(k, "instant_watts")) d->instant_watts = atof(val);
        else if (!strcmp(k, "mig")) d->mig = atoi(val);
        else if (!strcmp(k, "procs")) d->nprocs = parse_pids(val, d->procs);
        else if (!strcmp(k, "graphics")) d->ngraphics = parse_pids(val, d->graphics);
        else if (!strcmp(k, "mps_procs")) d->nmps = parse_pids(val, d->mps);
        else if (!strcmp(k, "pid_file")) snprintf(d->pid_file, sizeof d->pid_file, "%s", val);
        else if (!strcmp(k, "mps_pid_file")) snprintf(d->mps_pid_file, sizeof d->mps_pid_file, "%s", val);
        else if (!strcmp(k, "pid_offset")) d->pid_offset = strtoul(val, 0, 10);
        else if (!strcmp(k, "util_period_ms")) d->util_period_ms = strtoul(val, 0, 10);
        else if (!strcmp(k, "lost_after_s")) d->lost_after_s = atof(val);
        else if (!strcmp(k, "sm") && d->nsm < MAXSM) {
            sscanf(val, "%u %u", &d->sm_pid[d->nsm], &d->sm_val[d->nsm]);
            d->nsm++;
        } else if (!strcmp(k, "bad_sample")) sscanf(val, "%d %u", &d->bad_pid, &d->bad_value);
        else if (!strcmp(k, "err") && d->nerr < MAXERR) {
            sscanf(val, "%63s %d", d->err_fn[d->nerr], &d->err_code[d->nerr]);
            d->nerr++;
        }
    }
    fclose(f);
}

static void open_nodes(void) {
    char p[600];
    if (!fd_dir[0]) return;
    snprintf(p, sizeof p, "%s/nvidiactl", fd_dir);
    open(p, O_RDWR | O_CREAT, 0644); /* kept open until exit, like the real library's */
    for (int i = 0; i < ndev; i++) {
        snprintf(p, sizeof p, "%s/nvidia%u", fd_dir, devs[i].minor);
        open(p, O_RDWR | O_CREAT, 0644);
    }
}

int nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    if (!initialised) {
        load_config();
        if (init_error) return init_error;
        open_nodes();
        t0 = mono();
    }
    initialised++;
    log_event("init");
    return 0;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    if (!initialised) return 1;
    initialised--;
    log_event("shutdown");
    return 0;
}

const char *nvmlErrorString(int r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    default: return "Unknown Error";
    }
}

static int copy_str(char *buf, unsigned len, const char *s) {
    if (!initialised) return 1;
    if (strlen(s) + 1 > len) return 7;
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

int nvmlSystemGetDriverVersion(char *buf, unsigned len) { return copy_str(buf, len, driver); }
int nvmlSystemGetNVMLVersion(char *buf, unsigned len) { return copy_str(buf, len, "12.550.54.15"); }

int nvmlDeviceGetCount_v2(unsigned *count) {
    if (!initialised) return 1;
    *count = ndev;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, dev_t_ **handle) {
    if (!initialised) return 1;
    if (index >= (unsigned)ndev) return 2;
    *handle = &devs[index];
    return 0;
}

/* Every device call starts here: uninitialised, a bad handle, a lost GPU, a configured error. */
static int check(dev_t_ *d, const char *fn) {
    if (!initialised) return 1;
    if (d < devs || d >= devs + ndev) return 2;
    if (d->lost_after_s >= 0 && mono() - t0 > d->lost_after_s) return 15;
    for (int i = 0; i < d->nerr; i++)
        if (!strcmp(d->err_fn[i], fn)) return d->err_code[i];
    return 0;
}
#define CHECK(fn)                    \
    int rc_ = check(d, fn);          \
    if (rc_) return rc_

int nvmlDeviceGetName(dev_t_ *d, char *buf, unsigned len) {
    CHECK("nvmlDeviceGetName");
    return copy_str(buf, len, d->name);
}
int nvmlDeviceGetUUID(dev_t_ *d, char *buf, unsigned len) {
    CHECK("nvmlDeviceGetUUID");
    return copy_str(buf, len, d->uuid);
}
int nvmlDeviceGetMinorNumber(dev_t_ *d, unsigned *minor) {
    CHECK("nvmlDeviceGetMinorNumber");
    *minor = d->minor;
    return 0;
}
int nvmlDeviceGetMigMode(dev_t_ *d, unsigned *current, unsigned *pending) {
    CHECK("nvmlDeviceGetMigMode");
    if (d->mig < 0) return 3;
    *current = *pending = d->mig;
    return 0;
}
int nvmlDeviceGetPersistenceMode(dev_t_ *d, unsigned *mode) {
    CHECK("nvmlDeviceGetPersistenceMode");
    *mode = 1;
    return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(dev_t_ *d, unsigned long long *mj) {
    CHECK("nvmlDeviceGetTotalEnergyConsumption");
    if (d->energy_mj < 0) return 3;
    /* One counter per device, shared by every process: it runs on the boot clock, not from this nvmlInit. */
    *mj = d->energy_mj + (unsigned long long)(d->watts * mono() * 1000.0);
    return 0;
}
int nvmlDeviceGetPowerUsage(dev_t_ *d, unsigned *mw) {
    CHECK("nvmlDeviceGetPowerUsage");
    *mw = (unsigned)(d->watts * 1000.0);
    return 0;
}

typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    unsigned valueType, nvmlReturn;
    union { double d; unsigned ui; unsigned long long ull; } value;
} field_value_t;

int nvmlDeviceGetFieldValues(dev_t_ *d, int count, field_value_t *values) {
    CHECK("nvmlDeviceGetFieldValues");
    for (int i = 0; i < count; i++) {
        field_value_t *v = &values[i];
        v->timestamp = wall_us();
        v->latencyUsec = 0;
        if (v->fieldId == 186 && d->instant_watts != -1) { /* NVML_FI_DEV_POWER_INSTANT */
            v->valueType = 1;
            v->nvmlReturn = 0;
            v->value.ui = (unsigned)((d->instant_watts < 0 ? d->watts : d->instant_watts) * 1000.0);
        } else {
            v->nvmlReturn = 3;
        }
    }
    return 0;
}

static int read_pid_file(const char *path, unsigned *out, int n) {
    if (!path[0]) return n;
    FILE *f = fopen(path, "r");
    if (!f) return n;
    unsigned p;
    while (n < MAXPID && fscanf(f, "%u", &p) == 1) out[n++] = p;
    fclose(f);
    return n;
}

/* kind 0: compute, 1: graphics, 2: MPS clients. */
static int pids_of(dev_t_ *d, int kind, unsigned *out) {
    int n = 0;
    if (kind == 0) {
        memcpy(out, d->procs, d->nprocs * sizeof *out);
        n = d->nprocs;
        if (!d->mps_pid_file[0] && !d->nmps) n = read_pid_file(d->pid_file, out, n);
    } else if (kind == 1) {
        memcpy(out, d->graphics, d->ngraphics * sizeof *out);
        n = d->ngraphics;
    } else {
        memcpy(out, d->mps, d->nmps * sizeof *out);
        n = read_pid_file(d->mps_pid_file, out, d->nmps);
    }
    for (int i = 0; i < n; i++) out[i] += d->pid_offset;
    return n;
}

/* nvmlProcessInfo_v2_t/_v3_t: {pid, usedGpuMemory, gpuInstanceId, computeInstanceId}, 24 bytes; early
 * R535 drivers wrote 32 (with usedGpuCcProtectedMemory). The buffer is never written past count entries of
 * 24 bytes, whatever the stride. */
static int process_list(dev_t_ *d, const char *fn, int kind, unsigned *count, unsigned char *buf) {
    CHECK(fn);
    unsigned pids[MAXPID];
    int n = pids_of(d, kind, pids);
    if (!buf || *count < (unsigned)n) {
        *count = n;
        return n ? 7 : 0;
    }
    size_t limit = (size_t)*count * 24;
    memset(buf, 0, limit);
    for (int i = 0; i < n && (size_t)(i + 1) * proc_stride <= limit; i++) {
        unsigned char *e = buf + (size_t)i * proc_stride;
        unsigned long long mem = 512ULL << 20;
        unsigned none = 0xFFFFFFFFu;
        memcpy(e, &pids[i], 4);
        memcpy(e + 8, &mem, 8);
        memcpy(e + 16, &none, 4);
        memcpy(e + 20, &none, 4);
    }
    *count = n;
    return 0;
}

#ifndef FAKE_R470
int nvmlDeviceGetComputeRunningProcesses_v3(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetComputeRunningProcesses", 0, c, b);
}
int nvmlDeviceGetGraphicsRunningProcesses_v3(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetGraphicsRunningProcesses", 1, c, b);
}
int nvmlDeviceGetMPSComputeRunningProcesses_v3(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetMPSComputeRunningProcesses", 2, c, b);
}
#endif
int nvmlDeviceGetComputeRunningProcesses_v2(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetComputeRunningProcesses", 0, c, b);
}
int nvmlDeviceGetGraphicsRunningProcesses_v2(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetGraphicsRunningProcesses", 1, c, b);
}
int nvmlDeviceGetMPSComputeRunningProcesses_v2(dev_t_ *d, unsigned *c, void *b) {
    return process_list(d, "nvmlDeviceGetMPSComputeRunningProcesses", 2, c, b);
}

typedef struct {
    unsigned pid;
    unsigned long long timeStamp;
    unsigned smUtil, memUtil, encUtil, decUtil;
} util_sample_t;

static unsigned sm_of(dev_t_ *d, unsigned pid) {
    unsigned dflt = 0;
    for (int i = 0; i < d->nsm; i++) {
        if (d->sm_pid[i] + (d->sm_pid[i] ? d->pid_offset : 0) == pid) return d->sm_val[i];
        if (!d->sm_pid[i]) dflt = d->sm_val[i];
    }
    return dflt;
}

/* The driver keeps the last 8 grid points' samples (never from before nvmlInit), one per process on the
 * device (the compute list, so under MPS the server's pid), plus the configured bad sample. */
static int samples(dev_t_ *d, unsigned long long last_seen, util_sample_t *out, int cap) {
    unsigned pids[2 * MAXPID];
    int np = pids_of(d, 0, pids);
    np += pids_of(d, 1, pids + np);
    unsigned long long period = d->util_period_ms * 1000ULL, now = wall_us();
    unsigned long long start = now - (unsigned long long)((mono() - t0) * 1e6);
    int n = 0;
    for (int k = 7; k >= 0; k--) {
        unsigned long long t = (now / period - k) * period;
        if (t <= last_seen || t < start) continue;
        for (int i = 0; i <= np; i++) {
            unsigned pid = i < np ? pids[i] : (unsigned)d->bad_pid;
            if (i == np && d->bad_pid < 0) break;
            if (out && n < cap) {
                util_sample_t *s = &out[n];
                memset(s, 0, sizeof *s);
                s->pid = pid;
                s->timeStamp = t;
                s->smUtil = i < np ? sm_of(d, pid) : d->bad_value;
            }
            n++;
        }
    }
    return n;
}

int nvmlDeviceGetProcessUtilization(dev_t_ *d, util_sample_t *buf, unsigned *count, unsigned long long last) {
    CHECK("nvmlDeviceGetProcessUtilization");
    if (!d->util_period_ms) return 3;
    int n = samples(d, last, NULL, 0);
    if (!n && util_empty_success) { /* some drivers: SUCCESS and no samples, which the binding raises */
        *count = 0;
        return 0;
    }
    if (!n) return 6; /* NVML_ERROR_NOT_FOUND: nothing newer than `last` */
    if (!buf) {
        *count = util_sizing_count ? (unsigned)util_sizing_count : (unsigned)n;
        grow_pending = util_grow && (grow_calls++ % 2 == 0);
        return 7;
    }
    if (grow_pending) {
        grow_pending = 0;
        *count = n + 1;
        return 7;
    }
    if (*count < (unsigned)n) {
        *count = n;
        return 7;
    }
    *count = samples(d, last, buf, *count);
    return 0;
}
