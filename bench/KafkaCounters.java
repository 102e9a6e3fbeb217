// The broker's own counters over JMX, one JSON object per line read from stdin (bench/jmx.py
// compiles and runs this; see docs/ARCHITECTURE.md for the broker the gateway runs). No
// dependencies beyond the JDK: the Attach API starts the broker's local-only management agent
// (or finds the running one) and the platform JMX client reads its MBeans. One connection for
// every reading: a new JVM and connection per reading cost the broker CPU inside the window.
//
//   java -cp <dir> KafkaCounters <broker pid>     (a line in, a reading out, until EOF)

import static java.nio.charset.StandardCharsets.UTF_8;

import com.sun.tools.attach.VirtualMachine;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public final class KafkaCounters {
    private KafkaCounters() {}

    public static void main(String[] args) throws Exception {
        VirtualMachine vm = VirtualMachine.attach(args[0]);
        String address;
        try {
            // Loopback only, no port to choose; returns the running agent's address if any.
            address = vm.startLocalManagementAgent();
        } finally {
            vm.detach();
        }
        try (JMXConnector connector = JMXConnectorFactory.connect(new JMXServiceURL(address));
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, UTF_8))) {
            MBeanServerConnection server = connector.getMBeanServerConnection();
            while (in.readLine() != null) {
                System.out.println(read(server));
                System.out.flush();
            }
        }
    }

    private static String read(MBeanServerConnection server) throws Exception {
        // RequestsPerSec has one MBean per (request, version): summed per request name.
        Map<String, Long> requests = new TreeMap<>();
        for (ObjectName name : names(server,
                "kafka.network:type=RequestMetrics,name=RequestsPerSec,*")) {
            requests.merge(name.getKeyProperty("request"), count(server, name), Long::sum);
        }
        StringBuilder out = new StringBuilder("{");
        out.append("\"requests\":").append(object(requests));
        for (String metric : new String[] {"MessagesInPerSec", "BytesInPerSec", "BytesOutPerSec"}) {
            Map<String, Long> byTopic = new TreeMap<>();
            long all = 0;
            for (ObjectName name : names(server,
                    "kafka.server:type=BrokerTopicMetrics,name=" + metric + ",*")) {
                String topic = name.getKeyProperty("topic");
                if (topic == null) {
                    all = count(server, name);
                } else {
                    byTopic.put(topic, count(server, name));
                }
            }
            out.append(",\"").append(metric).append("\":").append(all);
            out.append(",\"").append(metric).append("ByTopic\":").append(object(byTopic));
        }
        Object cpu = server.getAttribute(new ObjectName("java.lang:type=OperatingSystem"),
                "ProcessCpuTime");
        out.append(",\"ProcessCpuTimeNs\":").append(((Number) cpu).longValue());
        return out.append("}").toString();
    }

    private static Set<ObjectName> names(MBeanServerConnection server, String pattern)
            throws Exception {
        return server.queryNames(new ObjectName(pattern), null);
    }

    private static long count(MBeanServerConnection server, ObjectName name) throws Exception {
        return ((Number) server.getAttribute(name, "Count")).longValue();
    }

    private static String object(Map<String, Long> values) {
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, Long> entry : values.entrySet()) {
            if (out.length() > 1) {
                out.append(',');
            }
            // Request and topic names are [A-Za-z0-9._-]: nothing to escape.
            out.append('"').append(entry.getKey()).append("\":").append(entry.getValue());
        }
        return out.append('}').toString();
    }
}
