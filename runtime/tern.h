// runtime/tern.h: everything a server author includes.
//
//   #include "runtime/tern.h"        // installed: #include <tern/runtime/tern.h>
#pragma once

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/waiter.h"
