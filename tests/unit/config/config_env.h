/*
 * config_env.h - shared by the configuration tests: an environment with no NEXUS_*
 * variables (nor DATABASE_URL), so that the machine's own settings cannot leak into a test.
 */
#ifndef NX_TEST_CONFIG_ENV_H
#define NX_TEST_CONFIG_ENV_H

#include <stdlib.h>
#include <string.h>

extern char **environ;

static inline void clear_nexus_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "NEXUS_", 6) == 0) {
                const char *eq = strchr(*e, '=');
                size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
                if (len >= sizeof(name))
                    len = sizeof(name) - 1;
                memcpy(name, *e, len);
                name[len] = '\0';
                break;
            }
        }
        if (!name[0])
            break;
        unsetenv(name); /* environ changes: look again from the start */
    }
    unsetenv("DATABASE_URL");
}

#endif
