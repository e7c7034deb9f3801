/* libFuzzer target: the node agent's facts file (written by its probe init container, or
 * by hand with --facts). Accepted facts survive their own rendering: written by
 * --write-facts and read back by --facts, they are the same facts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_facts f = {0}, back = {0};
    moat_error err = MOAT_ERROR_INIT;
    if (agent_facts_parse(&f, (const char *)data, size, "fuzz", &err) == 0) {
        char *text = agent_facts_json(&f);
        if (!text || agent_facts_parse(&back, text, strlen(text), "again", &err) < 0 ||
            !agent_facts_equal(&f, &back))
            abort();
        free(text);
    } else if (!err.message) {
        abort();
    }
    moat_error_clear(&err);
    return 0;
}
