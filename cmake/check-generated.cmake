# Fails when a committed generated file differs from what its generator prints.
# Usage: cmake -DGEN=<generator> -DDOC=<file> -P check-generated.cmake
execute_process(COMMAND ${GEN} OUTPUT_VARIABLE generated RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${GEN} failed with ${rc}")
endif()
file(READ ${DOC} committed)
if(NOT generated STREQUAL committed)
    message(FATAL_ERROR "${DOC} is out of date: regenerate it with scripts/gen-docs.sh")
endif()
