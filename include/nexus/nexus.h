/*
 * nexus/nexus.h - the one header a plugin includes.
 */
#ifndef NEXUS_NEXUS_H
#define NEXUS_NEXUS_H

#include <nexus/arena.h>
#include <nexus/cache.h>
#include <nexus/db.h>
#include <nexus/http.h>
#include <nexus/log.h>
#include <nexus/plugin.h>

#endif
