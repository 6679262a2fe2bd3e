# The stress tests again under the chaos schedule (TERN_CHAOS=<seed>, scheduler/sched.h: SchedOptions::chaos_seed),
# which picks at random among the legal scheduling choices and injects yields and spins at park and wake points, so
# that a lost wakeup or a resume-before-switch that one interleaving hides shows up. A failure's log starts with
# "tern: chaos schedule, seed N": rerun the binary with TERN_CHAOS=N to replay the same per-M decisions.
# Whole binaries, two seeds each (resize_test one); about 20 s of ctest wall time at -j2 in the -Werror build, 60 s
# under TSan (TERN_TEST_SCALE=0.1).
set(tern_chaos_seeds 1 2)
# Not rescue_test: it asserts which queue slot the normal schedule leaves each fiber in (the last spawned in runnext).
set(tern_chaos_tests park_test resize_test channel_test select_test mutex_test wait_group_test)
# Tests that check the order the normal schedule picks (not an invariant): the chaos schedule legally changes it.
set(tern_chaos_filter_park_test "--gtest_filter=-ParkHandoff.AbandonedParkRunsAfterThePartner")
foreach(name ${tern_chaos_tests})
  if(NOT TARGET ${name})
    continue()
  endif()
  set(seeds ${tern_chaos_seeds})
  if(name STREQUAL "resize_test")
    set(seeds 1)  # the slowest under TSan (about 50 s per seed): one seed keeps the suite's budget
  endif()
  foreach(seed ${seeds})
    add_test(NAME chaos.${name}.seed${seed} COMMAND ${name} ${tern_chaos_filter_${name}})
    set_tests_properties(chaos.${name}.seed${seed} PROPERTIES TIMEOUT 240
      ENVIRONMENT "TERN_CHAOS=${seed};TERN_LEAK_CHECK=1")
  endforeach()
endforeach()
