/*
 * core/log.h - configuring the error log (logging itself is public, <nexus/log.h>).
 */
#ifndef NX_CORE_LOG_H
#define NX_CORE_LOG_H

#include <nexus/log.h>

void nx_log_set_level(nx_log_level level);

/* Sets the level by name: debug, info, warn or error (others are ignored). */
void nx_log_apply_level(const char *name);

/* The role written in every line ("master", "worker"); a static string. */
void nx_log_set_role(const char *role);

#endif
