/*
 * agent98.c - a serial command agent for Windows 98.
 *
 * Windows 98 has no serial console, so the harness cannot type commands
 * into it.  agent98 fills that gap: it opens a COM port, announces itself
 * with a banner, then reads command lines, runs each one and streams its
 * output back over the same port, ending every command with a sentinel
 * that carries the exit code.  The protocol (see README.md) is:
 *
 *   host  -> agent   "@ID COMMAND LINE" CR LF      (a line without "@ID "
 *                                                   gets the id "0")
 *   agent -> host    output bytes, exactly as the program wrote them
 *   agent -> host    [CR LF if the output did not end with LF]
 *                    "@@END-ID-CODE@@"             (no line end after it)
 *
 * COMMAND is either a built-in ("!name args", plus the plain words "cd" and
 * "echo", which have no executable on Windows 98) or a program started with
 * CreateProcess.  Its stdout and stderr go through one anonymous pipe that
 * is polled (PeekNamedPipe), so output reaches the host as it is written.
 * A command that outlives its timeout, or that the host interrupts with a
 * Ctrl-C byte (0x03), is ended with TerminateProcess.
 *
 * Only functions Windows 95/98 export from KERNEL32 are used (each one is
 * listed in README.md); USER32's ExitWindowsEx is looked up at run time so
 * the program imports nothing but KERNEL32 and the C library.
 *
 * C89, our own code.
 */

#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../llama98/crc32.h" /* shared with llama98 */
#include "../llama98/u64.h"

#define AGENT_VERSION "1.0"
#define DEFAULT_PORT "COM1"
#define DEFAULT_BAUD 115200UL
#define DEFAULT_TIMEOUT_S 3600UL
#define INPUT_SIZE 4096
#define LINE_SIZE 2048
#define ID_SIZE 40
#define PIPE_CHUNK 4096
#define IDLE_SLEEP_MS 5
#define DRAIN_MS 2000UL /* output still accepted after the program ended */
#define CTRL_C 0x03
#define SETTIME_SLACK_100NS 20000000UL /* 2 s: closer clocks are left alone */

/* Exit codes the agent itself reports in the sentinel. */
#define CODE_OK 0
#define CODE_FAILED 1
#define CODE_USAGE 2
#define CODE_NOT_STARTED -1
#define CODE_TIMED_OUT -2
#define CODE_INTERRUPTED -3

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

static HANDLE g_port = INVALID_HANDLE_VALUE;
static char g_port_name[64] = DEFAULT_PORT;
static unsigned long g_baud = DEFAULT_BAUD;
static int g_rtscts = 0;
static int g_never_set_clock = 0;
static unsigned long g_timeout_ms = DEFAULT_TIMEOUT_S * 1000UL;

/* Bytes received from the host and not yet used. */
static char g_input[INPUT_SIZE];
static DWORD g_input_len = 0;
static int g_discarding = 0;     /* inside an over-long line */
static int g_interrupted = 0;    /* a Ctrl-C arrived while a program ran */

/* Whether the last byte sent to the host ended a line. */
static int g_at_line_start = 1;
static int g_port_failed = 0;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void log_local(const char *what, const char *text)
{
    /* The agent's own console window: what the screendump shows. */
    printf("agent98: %s%s\n", what, text);
    fflush(stdout);
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char *skip_spaces(char *text)
{
    while (*text != '\0' && is_space(*text)) {
        text++;
    }
    return text;
}

/* Split off the first word of `text` (NUL-terminating it); return the
 * rest with leading blanks skipped. */
static char *split_word(char *text)
{
    while (*text != '\0' && !is_space(*text)) {
        text++;
    }
    if (*text != '\0') {
        *text = '\0';
        text++;
    }
    return skip_spaces(text);
}

static void trim_right(char *text)
{
    size_t len = strlen(text);
    while (len > 0 && is_space(text[len - 1])) {
        text[--len] = '\0';
    }
}

static int same_word(const char *a, const char *b)
{
    while (*a != '\0' && *b != '\0') {
        char ca = *a;
        char cb = *b;
        if (ca >= 'A' && ca <= 'Z') {
            ca = (char)(ca - 'A' + 'a');
        }
        if (cb >= 'A' && cb <= 'Z') {
            cb = (char)(cb - 'A' + 'a');
        }
        if (ca != cb) {
            return 0;
        }
        a++;
        b++;
    }
    return *a == '\0' && *b == '\0';
}

/* Parse a decimal number; 0 on success, -1 for anything else. */
static int parse_ulong(const char *text, unsigned long *value)
{
    unsigned long result = 0;
    if (*text == '\0') {
        return -1;
    }
    while (*text != '\0') {
        if (*text < '0' || *text > '9' || result > 429496728UL) {
            return -1;
        }
        result = result * 10UL + (unsigned long)(*text - '0');
        text++;
    }
    *value = result;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The serial port                                                     */
/* ------------------------------------------------------------------ */

static void port_write(const char *data, DWORD len)
{
    DWORD done;
    DWORD written;
    if (len == 0 || g_port_failed) {
        return;
    }
    done = 0;
    while (done < len) {
        if (!WriteFile(g_port, data + done, len - done, &written, NULL) || written == 0) {
            /* The host is gone or the write timed out; keep running so a
             * reconnecting host can still talk to us, but stop writing this
             * burst. */
            g_port_failed = 1;
            return;
        }
        done += written;
    }
    g_at_line_start = data[len - 1] == '\n';
}

static void port_puts(const char *text)
{
    port_write(text, (DWORD)strlen(text));
}

static void port_line(const char *text)
{
    port_puts(text);
    port_puts("\r\n");
}

/* An error line for the host: "agent98: WHAT: Windows error N". */
static void port_win_error(const char *what, const char *arg)
{
    char buffer[LINE_SIZE + 96];
    sprintf(buffer, "agent98: %s %.*s: Windows error %lu", what, LINE_SIZE, arg,
            (unsigned long)GetLastError());
    port_line(buffer);
}

static int open_port(void)
{
    DCB dcb;
    COMMTIMEOUTS timeouts;
    char device[80];

    /* COM1..COM9 by their plain names, which every Windows opens; on
     * Windows 95/98 a "\\.\" name would be taken for a VxD. COM10 and
     * above exist only on NT, as "\\.\COM10". */
    if (strlen(g_port_name) > 4 && strncmp(g_port_name, "\\\\", 2) != 0
        && (g_port_name[0] == 'C' || g_port_name[0] == 'c')) {
        sprintf(device, "\\\\.\\%.60s", g_port_name);
    } else {
        sprintf(device, "%.70s", g_port_name);
    }
    g_port = CreateFileA(device, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    if (g_port == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "agent98: error: cannot open %s: Windows error %lu\n", g_port_name,
                (unsigned long)GetLastError());
        return -1;
    }
    memset(&dcb, 0, sizeof dcb);
    dcb.DCBlength = sizeof dcb;
    if (!GetCommState(g_port, &dcb)) {
        log_local("warning: GetCommState failed on ", g_port_name);
    }
    dcb.DCBlength = sizeof dcb;
    dcb.BaudRate = g_baud;
    dcb.ByteSize = 8;
    dcb.Parity = NOPARITY;
    dcb.StopBits = ONESTOPBIT;
    dcb.fBinary = TRUE;
    dcb.fParity = FALSE;
    dcb.fOutxCtsFlow = g_rtscts ? TRUE : FALSE;
    dcb.fOutxDsrFlow = FALSE;
    dcb.fDtrControl = DTR_CONTROL_ENABLE;
    dcb.fDsrSensitivity = FALSE;
    dcb.fOutX = FALSE;
    dcb.fInX = FALSE;
    dcb.fErrorChar = FALSE;
    dcb.fNull = FALSE;
    dcb.fRtsControl = g_rtscts ? RTS_CONTROL_HANDSHAKE : RTS_CONTROL_ENABLE;
    dcb.fAbortOnError = FALSE;
    if (!SetCommState(g_port, &dcb)) {
        /* A pseudo-terminal under Wine has no modem lines; a real UART
         * always accepts 8N1. Say so and carry on. */
        log_local("warning: SetCommState failed on ", g_port_name);
    }
    /* Reads return at once with whatever has arrived; writes give up
     * after 10 s (a host that stopped reading must not hang us). */
    timeouts.ReadIntervalTimeout = MAXDWORD;
    timeouts.ReadTotalTimeoutMultiplier = 0;
    timeouts.ReadTotalTimeoutConstant = 0;
    timeouts.WriteTotalTimeoutMultiplier = 0;
    timeouts.WriteTotalTimeoutConstant = 10000;
    if (!SetCommTimeouts(g_port, &timeouts)) {
        fprintf(stderr, "agent98: error: cannot set timeouts on %s: Windows error %lu\n", g_port_name,
                (unsigned long)GetLastError());
        return -1;
    }
    PurgeComm(g_port, PURGE_RXCLEAR | PURGE_TXCLEAR);
    return 0;
}

/* Append whatever the host sent to the input buffer. While a program is
 * running, a Ctrl-C byte is taken out and raises g_interrupted. Returns the
 * number of new bytes. */
static DWORD poll_port(int program_running)
{
    char chunk[512];
    DWORD got = 0;
    DWORD i;
    DWORD room = INPUT_SIZE - g_input_len;
    if (room > sizeof chunk) {
        room = sizeof chunk;
    }
    if (room == 0) {
        return 0;
    }
    if (!ReadFile(g_port, chunk, room, &got, NULL)) {
        return 0;
    }
    if (got > 0) {
        g_port_failed = 0;
    }
    for (i = 0; i < got; i++) {
        if (chunk[i] == CTRL_C) {
            if (program_running) {
                g_interrupted = 1;
            }
            continue;
        }
        g_input[g_input_len++] = chunk[i];
    }
    return got;
}

/* Take one complete line out of the input buffer into `line`.
 * Returns 1 for a line, 0 when no complete line is there yet,
 * -1 for a line that was too long (it is dropped). */
static int next_line(char *line)
{
    DWORD i;
    for (i = 0; i < g_input_len; i++) {
        if (g_input[i] == '\r' || g_input[i] == '\n') {
            int result = 1;
            if (g_discarding) {
                g_discarding = 0;
                result = -1;
            } else if (i >= LINE_SIZE) {
                result = -1;
            } else {
                memcpy(line, g_input, i);
                line[i] = '\0';
            }
            g_input_len -= i + 1;
            memmove(g_input, g_input + i + 1, g_input_len);
            return result;
        }
    }
    if (g_input_len >= LINE_SIZE) {
        /* No line end in sight: drop what we have, remember to drop the rest. */
        g_input_len = 0;
        g_discarding = 1;
    }
    return 0;
}

static void send_sentinel(const char *id, long code)
{
    char buffer[ID_SIZE + 48];
    if (!g_at_line_start) {
        port_puts("\r\n");
    }
    sprintf(buffer, "@@END-%s-%ld@@", id, code);
    port_puts(buffer);
    /* No line end follows: the next command's output starts right after
     * the sentinel, so the host's view of it starts clean. */
    g_at_line_start = 1;
}

/* ------------------------------------------------------------------ */
/* 64-bit helpers for FILETIME (C89 has no 64-bit integer type)        */
/* ------------------------------------------------------------------ */

/* u64 and its arithmetic come from ports/llama98/u64.c. */

/* |a - b| < limit (limit below 2^32) */
static int u64_close(const u64 *a, const u64 *b, unsigned long limit)
{
    u64 d;
    u64_sub(&d, a, b);
    if (d.hi & 0x80000000UL) {
        u64_sub(&d, b, a);
    }
    return d.hi == 0 && d.lo < limit;
}

/* ------------------------------------------------------------------ */
/* Built-ins                                                           */
/* ------------------------------------------------------------------ */

static long builtin_crc32(char *args)
{
    static unsigned char buffer[32768];
    HANDLE file;
    DWORD got;
    unsigned long crc = 0UL;
    unsigned long size_lo = 0;
    unsigned long size_hi = 0;
    char line[LINE_SIZE + 64];

    trim_right(args);
    if (*args == '\0') {
        port_line("agent98: usage: !crc32 PATH");
        return CODE_USAGE;
    }
    file = CreateFileA(args, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        port_win_error("cannot open", args);
        return CODE_FAILED;
    }
    for (;;) {
        if (!ReadFile(file, buffer, sizeof buffer, &got, NULL)) {
            port_win_error("cannot read", args);
            CloseHandle(file);
            return CODE_FAILED;
        }
        if (got == 0) {
            break;
        }
        crc = crc32_update(crc, buffer, (size_t)got);
        size_lo = (size_lo + got) & 0xFFFFFFFFUL;
        if (size_lo < got) {
            size_hi++;
        }
    }
    CloseHandle(file);
    if (size_hi != 0) {
        port_line("agent98: file larger than 4 GB");
        return CODE_FAILED;
    }
    sprintf(line, "%08lx %lu %.*s", crc & 0xFFFFFFFFUL, size_lo, LINE_SIZE, args);
    port_line(line);
    return CODE_OK;
}

static long builtin_append(char *args)
{
    HANDLE file;
    DWORD written;
    char *text = split_word(args);
    size_t len;

    if (*args == '\0') {
        port_line("agent98: usage: !append PATH TEXT");
        return CODE_USAGE;
    }
    file = CreateFileA(args, GENERIC_WRITE, 0, NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        port_win_error("cannot open", args);
        return CODE_FAILED;
    }
    SetFilePointer(file, 0, NULL, FILE_END);
    len = strlen(text);
    if ((len > 0 && (!WriteFile(file, text, (DWORD)len, &written, NULL) || written != len))
        || !WriteFile(file, "\r\n", 2, &written, NULL) || written != 2) {
        port_win_error("cannot write", args);
        CloseHandle(file);
        return CODE_FAILED;
    }
    CloseHandle(file);
    return CODE_OK;
}

static long builtin_delete(char *args)
{
    DWORD error;
    trim_right(args);
    if (*args == '\0') {
        port_line("agent98: usage: !delete PATH");
        return CODE_USAGE;
    }
    if (DeleteFileA(args)) {
        return CODE_OK;
    }
    error = GetLastError();
    if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND) {
        return CODE_OK; /* already gone: what the caller wanted */
    }
    SetLastError(error);
    port_win_error("cannot delete", args);
    return CODE_FAILED;
}

static long builtin_mkdir(char *args)
{
    DWORD attributes;
    trim_right(args);
    if (*args == '\0') {
        port_line("agent98: usage: !mkdir PATH");
        return CODE_USAGE;
    }
    if (CreateDirectoryA(args, NULL)) {
        return CODE_OK;
    }
    attributes = GetFileAttributesA(args);
    if (attributes != 0xFFFFFFFFUL && (attributes & FILE_ATTRIBUTE_DIRECTORY)) {
        return CODE_OK;
    }
    port_win_error("cannot create directory", args);
    return CODE_FAILED;
}

static long builtin_type(char *args)
{
    static char buffer[PIPE_CHUNK];
    HANDLE file;
    DWORD got;
    trim_right(args);
    if (*args == '\0') {
        port_line("agent98: usage: !type PATH");
        return CODE_USAGE;
    }
    file = CreateFileA(args, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        port_win_error("cannot open", args);
        return CODE_FAILED;
    }
    while (ReadFile(file, buffer, sizeof buffer, &got, NULL) && got > 0) {
        port_write(buffer, got);
    }
    CloseHandle(file);
    return CODE_OK;
}

static long builtin_cd(char *args)
{
    char cwd[MAX_PATH + 1];
    trim_right(args);
    if (*args != '\0' && !SetCurrentDirectoryA(args)) {
        port_win_error("cannot change directory to", args);
        return CODE_FAILED;
    }
    if (GetCurrentDirectoryA(sizeof cwd, cwd) == 0) {
        port_win_error("cannot read the current directory", "");
        return CODE_FAILED;
    }
    port_line(cwd);
    return CODE_OK;
}

static long builtin_settime(char *args)
{
    unsigned long epoch;
    u64 target;
    u64 now;
    u64 unix_base;
    FILETIME file_time;
    SYSTEMTIME system_time;
    char line[96];

    trim_right(args);
    if (parse_ulong(args, &epoch) != 0) {
        port_line("agent98: usage: !settime SECONDS-SINCE-1970-UTC");
        return CODE_USAGE;
    }
    /* FILETIME = 100 ns since 1601: epoch * 10^7 + 116444736000000000 */
    u64_set(&target, 0UL, epoch);
    u64_mul_small(&target, &target, 10000000UL);
    u64_set(&unix_base, 0x019DB1DEUL, 0xD53E8000UL);
    u64_add(&target, &target, &unix_base);

    GetSystemTime(&system_time);
    if (!SystemTimeToFileTime(&system_time, &file_time)) {
        port_win_error("cannot read the clock", "");
        return CODE_FAILED;
    }
    u64_set(&now, file_time.dwHighDateTime, file_time.dwLowDateTime);
    if (u64_close(&target, &now, SETTIME_SLACK_100NS)) {
        port_line("clock already within 2 s");
        return CODE_OK;
    }
    if (g_never_set_clock) {
        port_line("clock differs but agent98 runs with -n: left alone");
        return CODE_OK;
    }
    file_time.dwHighDateTime = target.hi;
    file_time.dwLowDateTime = target.lo;
    if (!FileTimeToSystemTime(&file_time, &system_time) || !SetSystemTime(&system_time)) {
        port_win_error("cannot set the clock to", args);
        return CODE_FAILED;
    }
    sprintf(line, "clock set to %04u-%02u-%02u %02u:%02u:%02u UTC", system_time.wYear, system_time.wMonth,
            system_time.wDay, system_time.wHour, system_time.wMinute, system_time.wSecond);
    port_line(line);
    return CODE_OK;
}

static long builtin_timeout(char *args)
{
    unsigned long seconds;
    trim_right(args);
    if (parse_ulong(args, &seconds) != 0 || seconds == 0 || seconds > 4000000UL) {
        port_line("agent98: usage: !timeout SECONDS (1 to 4000000)");
        return CODE_USAGE;
    }
    g_timeout_ms = seconds * 1000UL;
    return CODE_OK;
}

typedef BOOL (WINAPI *ExitWindowsExFn)(UINT, DWORD);

static long builtin_shutdown(const char *id)
{
    HMODULE user32 = LoadLibraryA("USER32.DLL");
    ExitWindowsExFn exit_windows = NULL;
    if (user32 != NULL) {
        exit_windows = (ExitWindowsExFn)GetProcAddress(user32, "ExitWindowsEx");
    }
    if (exit_windows == NULL) {
        port_win_error("cannot find", "USER32!ExitWindowsEx");
        return CODE_FAILED;
    }
    /* Answer first: once Windows shuts down nobody is left to. */
    send_sentinel(id, CODE_OK);
    log_local("shutting down Windows", "");
    if (!exit_windows(EWX_SHUTDOWN | EWX_POWEROFF | EWX_FORCE, 0)) {
        log_local("ExitWindowsEx failed", "");
    }
    CloseHandle(g_port);
    ExitProcess(0);
    return CODE_OK;
}

/* ------------------------------------------------------------------ */
/* Running a program                                                   */
/* ------------------------------------------------------------------ */

/* Copy whatever the pipe holds to the port. Returns bytes moved, or -1
 * when the pipe is closed and empty. */
static long pump_pipe(HANDLE pipe)
{
    static char buffer[PIPE_CHUNK];
    DWORD available = 0;
    DWORD got = 0;
    if (!PeekNamedPipe(pipe, NULL, 0, NULL, &available, NULL)) {
        return -1;
    }
    if (available == 0) {
        return 0;
    }
    if (available > sizeof buffer) {
        available = sizeof buffer;
    }
    if (!ReadFile(pipe, buffer, available, &got, NULL)) {
        return -1;
    }
    port_write(buffer, got);
    return (long)got;
}

static long run_program(char *command_line)
{
    SECURITY_ATTRIBUTES inherit;
    HANDLE read_end;
    HANDLE read_private;
    HANDLE write_end;
    HANDLE null_input;
    STARTUPINFOA startup;
    PROCESS_INFORMATION process;
    DWORD started;
    DWORD exit_code = 0;
    long code;
    int finished = 0;
    int quiet_rounds = 0;
    DWORD finished_at = 0;

    inherit.nLength = sizeof inherit;
    inherit.lpSecurityDescriptor = NULL;
    inherit.bInheritHandle = TRUE;
    if (!CreatePipe(&read_end, &write_end, &inherit, 0)) {
        port_win_error("cannot create a pipe for", command_line);
        return CODE_NOT_STARTED;
    }
    /* Our end must not be inherited, or the pipe never reports EOF.
     * (SetHandleInformation is NT-only; DuplicateHandle works on 98.) */
    if (!DuplicateHandle(GetCurrentProcess(), read_end, GetCurrentProcess(), &read_private, 0, FALSE,
                         DUPLICATE_SAME_ACCESS)) {
        port_win_error("cannot duplicate the pipe for", command_line);
        CloseHandle(read_end);
        CloseHandle(write_end);
        return CODE_NOT_STARTED;
    }
    CloseHandle(read_end);
    null_input = CreateFileA("NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit, OPEN_EXISTING,
                             0, NULL);

    memset(&startup, 0, sizeof startup);
    startup.cb = sizeof startup;
    startup.dwFlags = STARTF_USESTDHANDLES;
    startup.hStdInput = null_input;
    startup.hStdOutput = write_end;
    startup.hStdError = write_end;
    memset(&process, 0, sizeof process);
    if (!CreateProcessA(NULL, command_line, NULL, NULL, TRUE, 0, NULL, NULL, &startup, &process)) {
        port_win_error("cannot run", command_line);
        CloseHandle(write_end);
        CloseHandle(read_private);
        if (null_input != INVALID_HANDLE_VALUE) {
            CloseHandle(null_input);
        }
        return CODE_NOT_STARTED;
    }
    CloseHandle(write_end);
    if (null_input != INVALID_HANDLE_VALUE) {
        CloseHandle(null_input);
    }
    CloseHandle(process.hThread);

    started = GetTickCount();
    code = CODE_OK;
    g_interrupted = 0;
    for (;;) {
        long moved = pump_pipe(read_private);
        DWORD arrived = poll_port(1);
        if (!finished && WaitForSingleObject(process.hProcess, 0) == WAIT_OBJECT_0) {
            finished = 1;
            finished_at = GetTickCount();
        }
        if (finished) {
            /* The process is gone: take what it left in the pipe, then stop.
             * A grandchild may hold the pipe open (and keep writing); it gets
             * at most DRAIN_MS more, we do not wait for it to end. */
            if (moved <= 0) {
                quiet_rounds++;
            }
            if (moved < 0 || quiet_rounds >= 3 || (DWORD)(GetTickCount() - finished_at) > DRAIN_MS) {
                break;
            }
            continue;
        }
        if (g_interrupted) {
            TerminateProcess(process.hProcess, 1);
            WaitForSingleObject(process.hProcess, 5000);
            code = CODE_INTERRUPTED;
            finished = 1;
            finished_at = GetTickCount();
            continue;
        }
        if ((DWORD)(GetTickCount() - started) >= g_timeout_ms) {
            TerminateProcess(process.hProcess, 1);
            WaitForSingleObject(process.hProcess, 5000);
            code = CODE_TIMED_OUT;
            finished = 1;
            finished_at = GetTickCount();
            continue;
        }
        if (moved <= 0 && arrived == 0) {
            Sleep(IDLE_SLEEP_MS);
        }
    }
    if (code == CODE_OK) {
        if (GetExitCodeProcess(process.hProcess, &exit_code)) {
            code = (long)exit_code;
        } else {
            code = CODE_FAILED;
        }
    } else {
        char note[96];
        sprintf(note, "agent98: %s after %lu s, process terminated",
                code == CODE_TIMED_OUT ? "timed out" : "interrupted",
                (unsigned long)(GetTickCount() - started) / 1000UL);
        if (!g_at_line_start) {
            port_puts("\r\n");
        }
        port_line(note);
    }
    CloseHandle(process.hProcess);
    CloseHandle(read_private);
    return code;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */
/* ------------------------------------------------------------------ */

/* Returns 1 when the agent should exit after answering. */
static int handle_line(char *line)
{
    char id[ID_SIZE];
    char *command = skip_spaces(line);
    char *args;
    long code;
    int quit = 0;

    strcpy(id, "0");
    trim_right(command);
    if (*command == '\0') {
        return 0; /* an empty line (e.g. the LF of a CR LF pair): no answer */
    }
    if (*command == '@') {
        size_t len = 0;
        command++;
        while (command[len] != '\0' && !is_space(command[len])) {
            char c = command[len];
            int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
                     || c == '-';
            if (!ok || len + 1 >= ID_SIZE) {
                port_line("agent98: bad command id (letters, digits, '-' and '_', at most 39)");
                send_sentinel("0", CODE_USAGE);
                return 0;
            }
            id[len] = c;
            len++;
        }
        id[len] = '\0';
        if (len == 0) {
            strcpy(id, "0");
        }
        command = skip_spaces(command + len);
    }
    trim_right(command);
    if (*command == '\0') {
        send_sentinel(id, CODE_OK);
        return 0;
    }
    log_local("> ", command);

    if (command[0] == '!') {
        char *name = command + 1;
        args = split_word(name);
        if (same_word(name, "crc32")) {
            code = builtin_crc32(args);
        } else if (same_word(name, "append")) {
            code = builtin_append(args);
        } else if (same_word(name, "delete")) {
            code = builtin_delete(args);
        } else if (same_word(name, "mkdir")) {
            code = builtin_mkdir(args);
        } else if (same_word(name, "type")) {
            code = builtin_type(args);
        } else if (same_word(name, "cd")) {
            code = builtin_cd(args);
        } else if (same_word(name, "echo")) {
            port_line(args);
            code = CODE_OK;
        } else if (same_word(name, "settime")) {
            code = builtin_settime(args);
        } else if (same_word(name, "timeout")) {
            code = builtin_timeout(args);
        } else if (same_word(name, "ver")) {
            port_line("agent98 " AGENT_VERSION);
            code = CODE_OK;
        } else if (same_word(name, "exit")) {
            code = CODE_OK;
            quit = 1;
        } else if (same_word(name, "shutdown")) {
            code = builtin_shutdown(id);
        } else {
            char message[LINE_SIZE + 64];
            sprintf(message, "agent98: unknown built-in !%.*s (see README.md)", LINE_SIZE, name);
            port_line(message);
            code = CODE_USAGE;
        }
    } else {
        /* "cd" and "echo" are COMMAND.COM internals with no executable on
         * Windows 98, and the harness's console sync uses "echo". */
        char first[8];
        size_t len = 0;
        while (command[len] != '\0' && !is_space(command[len]) && len < sizeof first - 1) {
            first[len] = command[len];
            len++;
        }
        first[len] = '\0';
        if ((command[len] == '\0' || is_space(command[len])) && same_word(first, "echo")) {
            port_line(skip_spaces(command + len));
            code = CODE_OK;
        } else if ((command[len] == '\0' || is_space(command[len])) && same_word(first, "cd")) {
            code = builtin_cd(skip_spaces(command + len));
        } else {
            code = run_program(command);
        }
    }
    send_sentinel(id, code);
    return quit;
}

/* ------------------------------------------------------------------ */
/* Start-up                                                            */
/* ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: agent98 [-p PORT] [-b BAUD] [-r] [-n] [-t SECONDS] [-d DIR]\n"
            "  -p PORT     serial port (default " DEFAULT_PORT ")\n"
            "  -b BAUD     line speed (default 115200; always 8N1)\n"
            "  -r          RTS/CTS flow control (default: none)\n"
            "  -n          never change the clock (!settime only reports)\n"
            "  -t SECONDS  default per-command timeout (default 3600)\n"
            "  -d DIR      start in DIR\n");
}

static int parse_args(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long number;
        if (strcmp(arg, "-r") == 0) {
            g_rtscts = 1;
        } else if (strcmp(arg, "-n") == 0) {
            g_never_set_clock = 1;
        } else if ((strcmp(arg, "-p") == 0 || strcmp(arg, "-b") == 0 || strcmp(arg, "-t") == 0
                    || strcmp(arg, "-d") == 0) && value != NULL) {
            i++;
            if (arg[1] == 'p') {
                if (strlen(value) >= sizeof g_port_name) {
                    fprintf(stderr, "agent98: error: port name too long\n");
                    return -1;
                }
                strcpy(g_port_name, value);
            } else if (arg[1] == 'd') {
                if (!SetCurrentDirectoryA(value)) {
                    fprintf(stderr, "agent98: error: cannot change to directory %s\n", value);
                    return -1;
                }
            } else if (parse_ulong(value, &number) != 0 || number == 0
                       || (arg[1] == 't' && number > 4000000UL)) {
                fprintf(stderr, "agent98: error: %s needs a positive number, not %s\n", arg, value);
                return -1;
            } else if (arg[1] == 'b') {
                g_baud = number;
            } else {
                g_timeout_ms = number * 1000UL;
            }
        } else {
            usage();
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char line[LINE_SIZE + 1];
    char banner[160];

    if (parse_args(argc, argv) != 0) {
        return 2;
    }
    crc32_init();
    if (open_port() != 0) {
        return 1;
    }
    sprintf(banner, "\r\nagent98 " AGENT_VERSION " on %s %lu 8N1%s: AGENT98 READY", g_port_name, g_baud,
            g_rtscts ? " rts/cts" : "");
    port_puts(banner);
    g_at_line_start = 1; /* like the sentinel, the banner ends its message */
    log_local("listening on ", g_port_name);

    for (;;) {
        int status = next_line(line);
        if (status == 1) {
            if (handle_line(line)) {
                break;
            }
        } else if (status < 0) {
            port_line("agent98: command line too long (at most 2047 bytes)");
            send_sentinel("0", CODE_USAGE);
        } else if (poll_port(0) == 0) {
            Sleep(IDLE_SLEEP_MS * 4);
        }
    }
    log_local("exiting", "");
    CloseHandle(g_port);
    return 0;
}
