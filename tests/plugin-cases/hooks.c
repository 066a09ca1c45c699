/*
 * hooks: worker lifecycle. Each worker appends "start PID" when it starts and "stop PID"
 * when it leaves to the file named by the setting "file".
 */
#include <stdio.h>
#include <unistd.h>

#include <nexus/nexus.h>

static const nx_plugin_setting settings[] = {
    {.name = "file", .type = NX_SETTING_STR, .def = "", .help = "where to record"},
    {.name = NULL},
};

static void record(nx_plugin *p, const char *what)
{
    FILE *f = fopen(nx_plugin_config(p, "file"), "a");
    if (f) {
        fprintf(f, "%s %d\n", what, (int)getpid());
        fclose(f);
    }
}

static int on_start(nx_plugin *p)
{
    record(p, "start");
    return 0;
}

static void on_stop(nx_plugin *p)
{
    record(p, "stop");
}

static int init(nx_plugin *p)
{
    return nx_on_worker(p, on_start, on_stop);
}

NEXUS_PLUGIN_WITH_SETTINGS("hooks", "1.0.0", init, NULL, settings);
