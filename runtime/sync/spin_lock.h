// runtime/sync/spin_lock.h: tern::SpinLock for programs (defined in base/spin_lock.h, which every layer may use).
#pragma once

#include "base/spin_lock.h"  // IWYU pragma: export
